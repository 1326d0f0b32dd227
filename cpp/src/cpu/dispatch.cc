// Run-time choice of the instruction set. AVX and AVX-512 need both the CPU (CPUID) and the OS
// (XCR0: the register state is saved on context switch) to support them. NEON is part of the
// AArch64 base ISA: an AArch64 build always offers it.
#include <atomic>
#include <cstdlib>
#include <string>

#include "cpu/kernel_table.h"
#include "fastxent/errors.h"

#if defined(FASTXENT_HAVE_X86_KERNELS)
#include <cpuid.h>
#endif

namespace fastxent {
namespace cpu {
namespace {

#if defined(FASTXENT_HAVE_X86_KERNELS)
struct X86Features {
  bool avx2 = false;
  bool avx512 = false;
};

uint64_t read_xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

X86Features detect_x86() {
  X86Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29),
             avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;     // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512dq = b & (1u << 17),
             avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
  f.avx2 = os_ymm && avx2 && fma && f16c;
  f.avx512 = f.avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
  return f;
}
#endif

const KernelTable* table_for(const std::string& name) {
#if defined(FASTXENT_HAVE_X86_KERNELS)
  static const X86Features features = detect_x86();
  if (name == "avx512" && features.avx512) return &avx512::kTable;
  if (name == "avx2" && features.avx2) return &avx2::kTable;
#endif
#if defined(FASTXENT_HAVE_NEON_KERNELS)
  if (name == "neon") return &neon::kTable;
#endif
  if (name == "scalar") return &scalar::kTable;
  return nullptr;
}

const KernelTable* initial_table() {
  const char* forced = std::getenv("FASTXENT_ISA");
  if (forced && *forced) {
    const KernelTable* t = table_for(forced);
    if (t) return t;
    // An ISA this machine cannot run: fall through to the best one rather than fail every call;
    // fastxent.info() shows what was chosen.
  }
  return table_for(supported_isas().front());
}

std::atomic<const KernelTable*> g_active{nullptr};

}  // namespace

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (const char* n : {"avx512", "avx2", "neon", "scalar"}) {
    if (table_for(n)) names.emplace_back(n);
  }
  return names;
}

const KernelTable& active_kernels() {
  const KernelTable* t = g_active.load(std::memory_order_acquire);
  if (t == nullptr) {
    const KernelTable* chosen = initial_table();
    g_active.compare_exchange_strong(t, chosen, std::memory_order_acq_rel);
    t = g_active.load(std::memory_order_acquire);
  }
  return *t;
}

void select_isa(const std::string& name) {
  const KernelTable* t = table_for(name);
  if (t == nullptr) {
    std::string msg = "isa: '" + name + "' is not available here; choose one of:";
    for (const auto& n : supported_isas()) msg += " " + n;
    throw ValueError(msg);
  }
  g_active.store(t, std::memory_order_release);
}

}  // namespace cpu
}  // namespace fastxent
