// Exceptions thrown by the C++ API. The Python bindings map each one to the Python exception of
// the same name, so a message written here is what a Python user reads.
#pragma once

#include <stdexcept>
#include <string>

namespace fastxent {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class ValueError : public Error {  // bad shape, option value, aliasing
 public:
  using Error::Error;
};
class TypeError : public Error {  // unsupported dtype or device
 public:
  using Error::Error;
};
class IndexError : public Error {  // class-index target out of range
 public:
  using Error::Error;
};

}  // namespace fastxent
