# Cross-compiling for 64-bit Arm Linux with Debian's g++-aarch64-linux-gnu:
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cpp/cmake/aarch64-linux-gnu.cmake
# Binaries run on AArch64 hardware or under qemu-aarch64 (link with -static, or pass
# -L /usr/aarch64-linux-gnu to qemu).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Libraries and headers from the target's sysroot only; programs from the host. CMake packages
# also from CMAKE_PREFIX_PATH as given, so an aarch64 fastxent installed under any prefix is
# found by find_package(fastxent).
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
  find_program(FASTXENT_QEMU_AARCH64 qemu-aarch64)
  if(FASTXENT_QEMU_AARCH64)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${FASTXENT_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
  endif()
endif()
