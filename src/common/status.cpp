// Status helpers: code names and errno formatting. Host-only.
#include "common/status.h"

#include <cstring>

namespace teemate {

const char* code_name(Code c) {
  switch (c) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotFound: return "not found";
    case Code::kIo: return "i/o error";
    case Code::kCorrupt: return "corrupt input";
    case Code::kUnsupported: return "unsupported";
    case Code::kSecurity: return "security check failed";
    case Code::kBusy: return "busy";
    case Code::kResource: return "limit exceeded";
    case Code::kEnclaveFault: return "enclave fault";
    case Code::kInternal: return "internal error";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return message_;
}

Status io_error(const std::string& what, int err) {
  return Status(Code::kIo, what + ": " + std::strerror(err));
}

}  // namespace teemate
