// Status and Result<T>: errors as values for host-side code (tools, runtime,
// daemon, applications). A Status names what is at fault (file, field,
// limit) in its message; an enclave application's own error
// (tm_app_error) arrives as Code::kApplication with its code in app_code().
// Host-only (uses std::string): enclave code returns the TM_ERR_* codes of
// teemate/trusted/runtime.h instead and must never include this header.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

#include "teemate/export.h"
#include "teemate/status_codes.h"

namespace teemate {

enum class Code : uint8_t {
  kOk = 0,
  kInvalidArgument,  // caller passed something malformed
  kNotFound,
  kIo,               // a system call failed; message carries errno text
  kCorrupt,          // an input file or message is malformed
  kUnsupported,      // valid but not something we handle
  kSecurity,         // a check that protects the enclave failed
  kBusy,             // a resource is in use (TCS busy)
  kResource,         // a limit was exceeded
  kEnclaveFault,     // the enclave took an exception it did not handle
  kInternal,
  kApplication,      // the enclave application's own error: see app_code()
};

TEEMATE_EXPORT const char* code_name(Code c);

// Names of the status codes that cross the enclave boundary (the TM_ERR_*
// table, teemate/status_codes.h): "TM_ERR_MAC", and what it means. Unknown
// values give "TM_ERR_UNKNOWN(n)"-style text, never a bare number.
TEEMATE_EXPORT std::string call_status_name(int32_t status);
TEEMATE_EXPORT const char* call_status_description(int32_t status);

class [[nodiscard]] TEEMATE_EXPORT Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  // An application error: the code and message an enclave handler gave
  // tm_app_error.
  static Status application(int32_t app_code, std::string message) {
    Status s(Code::kApplication, std::move(message));
    s.app_code_ = app_code;
    return s;
  }
  static Status ok_status() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // The application's own code when code() == kApplication, else 0.
  int32_t app_code() const { return app_code_; }
  std::string to_string() const;

  // Prefixes the message with context: "loading foo.tme: " + message.
  Status with_context(const std::string& context) const {
    if (ok()) return *this;
    Status s(code_, context + ": " + message_);
    s.app_code_ = app_code_;
    return s;
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
  int32_t app_code_ = 0;
};

inline Status invalid_argument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status corrupt(std::string m) { return {Code::kCorrupt, std::move(m)}; }
inline Status unsupported(std::string m) { return {Code::kUnsupported, std::move(m)}; }
inline Status security_error(std::string m) { return {Code::kSecurity, std::move(m)}; }
inline Status internal_error(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Status resource_error(std::string m) { return {Code::kResource, std::move(m)}; }
// Builds a kIo status from errno: "what: strerror(errno)".
TEEMATE_EXPORT Status io_error(const std::string& what, int err);

// Result<T>: a value or a non-ok Status (C++20 stand-in for std::expected).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                 // NOLINT implicit
  Result(Status status) : v_(std::move(status)) {}          // NOLINT implicit

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace teemate

#define TM_CONCAT_INNER(a, b) a##b
#define TM_CONCAT(a, b) TM_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if expr is not ok.
#define TM_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::teemate::Status tm_status_ = (expr);       \
    if (!tm_status_.ok()) return tm_status_;     \
  } while (0)

// Assigns the value of a Result expression to lhs, or returns its Status.
#define TM_ASSIGN_OR_RETURN(lhs, expr) TM_ASSIGN_OR_RETURN_IMPL(TM_CONCAT(tm_result_, __LINE__), lhs, expr)
#define TM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
