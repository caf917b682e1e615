// Status helpers: code names and errno formatting. Host-only.
#include "teemate/status.h"

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
    case Code::kApplication: return "application error";
  }
  return "unknown";
}

std::string call_status_name(int32_t status) {
  switch (status) {
#define TEEMATE_STATUS_NAME_CASE_(name, value, desc) \
  case value: return "TM_" #name;
    TEEMATE_STATUS_CODES(TEEMATE_STATUS_NAME_CASE_)
#undef TEEMATE_STATUS_NAME_CASE_
  }
  return "unknown status " + std::to_string(status);
}

const char* call_status_description(int32_t status) {
  switch (status) {
#define TEEMATE_STATUS_DESC_CASE_(name, value, desc) \
  case value: return desc;
    TEEMATE_STATUS_CODES(TEEMATE_STATUS_DESC_CASE_)
#undef TEEMATE_STATUS_DESC_CASE_
  }
  return "a status this host does not know (a newer enclave runtime?)";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return message_;
}

Status io_error(const std::string& what, int err) {
  return Status(Code::kIo, what + ": " + std::strerror(err));
}

}  // namespace teemate
