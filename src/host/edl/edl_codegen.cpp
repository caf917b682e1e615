// Code generator of typed calls: from an Interface, the enclave side
// (NAME_t.h: the ECALLs the program implements and the OCALL stubs it
// calls; NAME_t.cpp: TM_ECALL handlers and OCALL stubs) and the host side
// (NAME_u.h: the ECALL proxies and the OCALLs the application implements;
// NAME_u.cpp: proxies and the OCALL handlers NAME_register_ocalls installs).
//
// The callee side of either direction is one generated function that
// parses the request blob as hostile input (exact lengths it computes
// itself, presence words 0 or 1, scalars that fit their type, strings
// NUL-terminated exactly at their end) and writes the response; the caller
// side builds the request and checks the response the same way. Never
// decides anything at generation time that the callee does not re-check.
#include "base/hex.h"
#include "host/edl/edl.h"

namespace teemate::edl {
namespace {

// A 64-bit constant as C++ source: "0x00000000deadbeefull".
std::string u64_literal(uint64_t v) { return "0x" + base::hex16(v) + "ull"; }
using base::hex;

// The runtime's own interfaces (tm_*): their ECALLs are dispatched by the
// runtime, not registered in the application's ECALL table.
bool is_runtime(const Interface& iface) { return iface.name.rfind("tm_", 0) == 0; }

std::string pointee(const Param& p) { return p.type.spelling == "void" ? "void" : p.type.spelling; }

// The C declaration of a parameter, as the application writes it.
std::string decl(const Param& p) {
  std::string s = p.is_const ? "const " : "";
  s += pointee(p);
  if (p.pointer) s += "*";
  return s + " " + p.name;
}

std::string ret_type(const Function& f) { return f.has_return ? f.ret.spelling : "void"; }

std::string param_list(const Function& f) {
  std::string s;
  for (const Param& p : f.params) s += (s.empty() ? "" : ", ") + decl(p);
  return s.empty() ? "void" : s;
}

std::string arg_list(const Function& f) {
  std::string s;
  for (const Param& p : f.params) s += (s.empty() ? "" : ", ") + p.name;
  return s;
}

bool copies_in(const Param& p) { return p.dir == Direction::kIn || p.dir == Direction::kInOut; }
bool copies_out(const Param& p) { return p.dir == Direction::kOut || p.dir == Direction::kInOut; }
bool sized(const Param& p) { return p.pointer && !p.user_check && !p.string; }
uint32_t elem_size(const Param& p) { return p.type.spelling == "void" ? 1 : p.type.size; }

// Code that sets `uint64_t <var>` to the byte size of pointer p from the
// values of the (already known) scalar parameters; `fail` on overflow.
std::string size_code(const Param& p, const std::string& var, const std::string& fail) {
  std::string n = p.has_size ? (p.size_param.empty() ? std::to_string(p.size_const) + "ull"
                                                       : "static_cast<uint64_t>(" + p.size_param + ")")
                             : "1ull";
  const uint64_t mul = p.has_size && !p.size_is_count ? 1 : elem_size(p);
  std::string s = "  uint64_t " + var + " = 0;\n";
  s += "  if (!::teemate::wire::checked_mul(" + n + ", " + std::to_string(mul) + "ull, &" + var + ") || " + var +
       " > tm_kMaxBytes) " + fail + "\n";
  return s;
}

// The error-code constants, generated from the status table on both sides.
const char* kCodes =
    "#define TM_EDL_CODE_(name, value, desc) [[maybe_unused]] constexpr int tm_k_##name = value;\n"
    "TEEMATE_STATUS_CODES(TM_EDL_CODE_)\n"
    "#undef TM_EDL_CODE_\n"
    "// Largest single buffer a typed call carries (the enclave's max_call_buffer\n"
    "// is the real limit; this only keeps size arithmetic far from overflow).\n"
    "[[maybe_unused]] constexpr uint64_t tm_kMaxBytes = uint64_t{1} << 40;\n";

// The callee side: parse the request, lay out the response, call `impl`.
// Returns k_OK or an error code; sets *out_used.
std::string callee(const Function& f, const std::string& fn_name, const std::string& impl) {
  std::string s = "int " + fn_name +
                  "(const void* tm_in_data, size_t tm_in_size, void* tm_out_data, size_t tm_out_cap, size_t* tm_out_used) {\n";
  s += "  ::teemate::wire::Reader tm_in(tm_in_data, tm_in_size);\n";
  s += "  [[maybe_unused]] uint64_t tm_word = 0;\n";
  for (const Param& p : f.params) {
    if (p.pointer) continue;
    s += "  if (!tm_in.word(&tm_word) || !::teemate::wire::fits<" + p.type.spelling + ">(tm_word)) return tm_k_ERR_INVALID;\n";
    s += "  " + p.type.spelling + " " + p.name + " = ::teemate::wire::from_word<" + p.type.spelling + ">(tm_word);\n";
  }
  s += "  size_t tm_resp_len = 8;\n";
  for (const Param& p : f.params) {
    if (!p.pointer) continue;
    const std::string T = (p.is_const ? "const " : "") + pointee(p);
    if (p.user_check) {
      s += "  if (!tm_in.word(&tm_word)) return tm_k_ERR_INVALID;\n";
      s += "  " + T + "* " + p.name + " = reinterpret_cast<" + T + "*>(static_cast<uintptr_t>(tm_word));\n";
      continue;
    }
    s += "  uint64_t tm_present_" + p.name + " = 0;\n";
    s += "  if (!tm_in.word(&tm_present_" + p.name + ") || tm_present_" + p.name + " > ::teemate::wire::kPresent) return tm_k_ERR_INVALID;\n";
    if (p.string) {
      s += "  const char* " + p.name + " = nullptr;\n";
      s += "  if (tm_present_" + p.name + ") {\n";
      s += "    uint64_t tm_len_ = 0;\n";
      s += "    const uint8_t* tm_d = nullptr;\n";
      s += "    if (!tm_in.word(&tm_len_) || tm_len_ == 0 || tm_len_ > tm_in.left() || !tm_in.bytes(static_cast<size_t>(tm_len_), &tm_d)) return tm_k_ERR_INVALID;\n";
      s += "    if (tm_d[tm_len_ - 1] != 0 || ::strnlen(reinterpret_cast<const char*>(tm_d), tm_len_) != tm_len_ - 1) return tm_k_ERR_INVALID;\n";
      s += "    " + p.name + " = reinterpret_cast<const char*>(tm_d);\n";
      s += "  }\n";
      continue;
    }
    s += size_code(p, "tm_bytes_" + p.name, "return tm_k_ERR_INVALID;");
    if (copies_in(p)) {
      s += "  const uint8_t* tm_src_" + p.name + " = nullptr;\n";
      s += "  if (tm_present_" + p.name + " && !tm_in.bytes(static_cast<size_t>(tm_bytes_" + p.name + "), &tm_src_" + p.name +
           ")) return tm_k_ERR_INVALID;\n";      if (p.type.spelling == "bool") {  // only 0 and 1 are bools: anything else is undefined behaviour
        s += "  if (tm_present_" + p.name + " && !::teemate::wire::bools_valid(tm_src_" + p.name + ", static_cast<size_t>(tm_bytes_" +
             p.name + "))) return tm_k_ERR_INVALID;\n";
      }
    }
    if (copies_out(p)) {
      s += "  if (tm_present_" + p.name + " && !::teemate::wire::checked_add(tm_resp_len, ::teemate::wire::padded(static_cast<size_t>(tm_bytes_" +
           p.name + ")), &tm_resp_len)) return tm_k_ERR_INVALID;\n";
    }
  }
  s += "  if (tm_in.left() != 0) return tm_k_ERR_INVALID;  // exactly the request this interface describes\n";
  s += "  if (tm_out_cap < tm_resp_len) return tm_k_ERR_INVALID;\n";
  s += "  ::teemate::wire::Writer tm_out(tm_out_data, tm_out_cap);\n";
  s += "  uint8_t* tm_ret_at = tm_out.reserve(8);\n";
  s += "  if (!tm_ret_at) return tm_k_ERR_INVALID;\n";
  for (const Param& p : f.params) {
    if (!sized(p)) continue;
    const std::string T = (p.is_const ? "const " : "") + pointee(p);
    if (copies_out(p)) {
      s += "  " + T + "* " + p.name + " = nullptr;\n";
      s += "  if (tm_present_" + p.name + ") {\n";
      s += "    uint8_t* tm_at = tm_out.reserve(static_cast<size_t>(tm_bytes_" + p.name + "));\n";
      s += "    if (!tm_at) return tm_k_ERR_INVALID;\n";
      if (copies_in(p)) s += "    ::memcpy(tm_at, tm_src_" + p.name + ", static_cast<size_t>(tm_bytes_" + p.name + "));\n";
      else s += "    ::memset(tm_at, 0, static_cast<size_t>(tm_bytes_" + p.name + "));\n";
      s += "    " + p.name + " = reinterpret_cast<" + T + "*>(tm_at);\n";
      s += "  }\n";
    } else {
      s += "  " + T + "* " + p.name + " = tm_present_" + p.name + " ? reinterpret_cast<" + T +
           "*>(const_cast<uint8_t*>(tm_src_" + p.name + ")) : nullptr;\n";
    }
  }
  if (f.has_return) {
    s += "  const " + f.ret.spelling + " tm_value = " + impl + "(" + arg_list(f) + ");\n";
    s += "  const uint64_t tm_ret_word = ::teemate::wire::to_word<" + f.ret.spelling + ">(tm_value);\n";
  } else {
    s += "  " + impl + "(" + arg_list(f) + ");\n";
    s += "  const uint64_t tm_ret_word = 0;\n";
  }
  s += "  ::memcpy(tm_ret_at, &tm_ret_word, 8);\n";
  s += "  *tm_out_used = tm_out.used();\n";
  s += "  return tm_k_OK;\n}\n\n";
  return s;
}

// The caller side: sizes, the request, and (after the call) the response.
// `host` selects the host proxy (Status, std::vector) or the enclave OCALL
// stub (int, malloc).
std::string caller(const Function& f, bool host) {
  const std::string fail_size = host ? "return ::teemate::invalid_argument(\"" + f.name + ": a buffer size is too large\");"
                                     : "return tm_k_ERR_TOO_LARGE;";
  std::string s;
  s += "  [[maybe_unused]] uint64_t tm_word = 0;\n";
  s += "  size_t tm_req_len = 0, tm_resp_len = 8;\n";
  for (const Param& p : f.params) {
    if (!p.pointer) {
      s += "  tm_req_len += 8;\n";
      continue;
    }
    s += "  tm_req_len += 8;\n";
    if (p.user_check) continue;
    if (p.string) {
      s += "  const size_t tm_len_" + p.name + " = " + p.name + " ? ::strlen(" + p.name + ") + 1 : 0;\n";
      s += "  if (" + p.name + " && (tm_len_" + p.name + " > tm_kMaxBytes || !::teemate::wire::checked_add(tm_req_len, 8 + ::teemate::wire::padded(tm_len_" +
           p.name + "), &tm_req_len))) " + fail_size + "\n";
      continue;
    }
    s += size_code(p, "tm_bytes_" + p.name, fail_size);
    if (copies_in(p)) {
      s += "  if (" + p.name + " && !::teemate::wire::checked_add(tm_req_len, ::teemate::wire::padded(static_cast<size_t>(tm_bytes_" + p.name +
           ")), &tm_req_len)) " + fail_size + "\n";
    }
    if (copies_out(p)) {
      s += "  if (" + p.name + " && !::teemate::wire::checked_add(tm_resp_len, ::teemate::wire::padded(static_cast<size_t>(tm_bytes_" + p.name +
           ")), &tm_resp_len)) " + fail_size + "\n";
    }
  }
  if (host) {
    // Refused before anything is allocated (review defect: a size of 2^36
    // made the proxy throw bad_alloc out of a Status API): no enclave's
    // max_call_buffer exceeds 1 GiB.
    s += "  if (tm_req_len > (size_t{1} << 30) || tm_resp_len > (size_t{1} << 30)) return ::teemate::resource_error(\"" +
         f.name + ": the call needs \" + ::std::to_string(tm_req_len) + \" bytes in and \" + ::std::to_string(tm_resp_len) + "
         "\" out; an enclave's max_call_buffer is at most 1 GiB\");\n";
    s += "  ::std::vector<uint8_t> tm_req(tm_req_len ? tm_req_len : 8), tm_resp(tm_resp_len);\n";
    s += "  ::teemate::wire::Writer tm_w(tm_req.data(), tm_req_len);\n";
  } else {
    s += "  uint8_t* tm_req = static_cast<uint8_t*>(::malloc(tm_req_len ? tm_req_len : 8));\n";
    s += "  uint8_t* tm_resp = static_cast<uint8_t*>(::malloc(tm_resp_len));\n";
    s += "  if (!tm_req || !tm_resp) {\n    ::free(tm_req);\n    ::free(tm_resp);\n    return tm_k_ERR_NO_MEMORY;\n  }\n";
    s += "  ::teemate::wire::Writer tm_w(tm_req, tm_req_len);\n";
  }
  s += "  bool tm_ok = true;\n";
  for (const Param& p : f.params) {
    if (p.pointer) continue;
    s += "  tm_ok = tm_ok && tm_w.word(::teemate::wire::to_word<" + p.type.spelling + ">(" + p.name + "));\n";
  }
  for (const Param& p : f.params) {
    if (!p.pointer) continue;
    if (p.user_check) {
      s += "  tm_ok = tm_ok && tm_w.word(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(" + p.name + ")));\n";
      continue;
    }
    s += "  tm_ok = tm_ok && tm_w.word(" + p.name + " ? ::teemate::wire::kPresent : ::teemate::wire::kAbsent);\n";
    if (p.string) {
      s += "  if (" + p.name + ") tm_ok = tm_ok && tm_w.word(tm_len_" + p.name + ") && tm_w.bytes(" + p.name + ", tm_len_" + p.name + ");\n";
    } else if (copies_in(p)) {
      s += "  if (" + p.name + ") tm_ok = tm_ok && tm_w.bytes(" + p.name + ", static_cast<size_t>(tm_bytes_" + p.name + "));\n";
    }
  }
  return s;
}

std::string response_code(const Function& f, bool host, const std::string& fail) {
  std::string s;
  s += "  ::teemate::wire::Reader tm_r(" + std::string(host ? "tm_resp.data()" : "tm_resp") + ", tm_resp_len);\n";
  s += "  if (!tm_r.word(&tm_word)) " + fail + "\n";
  if (f.has_return) {
    s += "  if (!::teemate::wire::fits<" + f.ret.spelling + ">(tm_word)) " + fail + "\n";
    s += "  if (tm_ret) *tm_ret = ::teemate::wire::from_word<" + f.ret.spelling + ">(tm_word);\n";
  }
  for (const Param& p : f.params) {
    if (!sized(p) || !copies_out(p)) continue;
    s += "  if (" + p.name + ") {\n";
    s += "    const uint8_t* tm_d = nullptr;\n";
    s += "    if (!tm_r.bytes(static_cast<size_t>(tm_bytes_" + p.name + "), &tm_d)) " + fail + "\n";
    if (p.type.spelling == "bool") {
      s += "    if (!::teemate::wire::bools_valid(tm_d, static_cast<size_t>(tm_bytes_" + p.name + "))) " + fail + "\n";
    }
    s += "    ::memcpy(" + p.name + ", tm_d, static_cast<size_t>(tm_bytes_" + p.name + "));\n";
    s += "  }\n";
  }
  return s;
}

std::string header_comment(const Interface& iface, const char* what) {
  return "// Generated by `teemate edger` from " + iface.name + ".edl: " + what +
         ".\n// Do not edit; change the interface and regenerate.\n";
}

// Doc line of a function for the headers.
std::string sig_comment(const Function& f) { return "// " + canonical_signature(f) + "\n"; }

std::string trusted_header(const Interface& iface) {
  std::string guard = "TEEMATE_EDL_" + iface.name + "_T_H_";
  std::string s = "/* Generated by `teemate edger` from " + iface.name +
                  ".edl: the enclave side.\n * Do not edit; change the interface and regenerate. */\n";
  s += "#ifndef " + guard + "\n#define " + guard + "\n\n#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n";
  s += "#include <sys/types.h>\n\n#include \"teemate/trusted/runtime.h\"  /* TM_OK and the TM_ERR_* codes */\n\n";
  s += "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n";
  s += "/* ECALLs: implement these in the enclave program. */\n";
  for (const Function& f : iface.ecalls) {
    s += ret_type(f) + " " + f.name + "(" + param_list(f) + ");\n";
  }
  s += "\n/* OCALLs: call these; each returns TM_OK or a TM_ERR_* code (the host's\n"
       " * answer is checked before anything reaches the caller), and stores the\n"
       " * host function's return value through `tm_ret` (may be NULL). */\n";
  for (const Function& f : iface.ocalls) {
    std::string params = f.has_return ? f.ret.spelling + "* tm_ret" : "";
    for (const Param& p : f.params) params += (params.empty() ? "" : ", ") + decl(p);
    s += "int " + f.name + "(" + (params.empty() ? "void" : params) + ");\n";
  }
  s += "\n#ifdef __cplusplus\n}\n#endif\n";
  if (is_runtime(iface) && !iface.ecalls.empty()) {
    s += "\n#ifdef __cplusplus\n/* The runtime dispatches these ECALLs itself (never through TM_ECALL). */\n";
    s += "int " + iface.name + "_dispatch_ecall(uint32_t tm_id, tm_call* tm_c);\n#endif\n";
  }
  s += "\n#endif\n";
  return s;
}

std::string trusted_source(const Interface& iface) {
  std::string s = header_comment(iface, "the enclave side (ECALL handlers, OCALL stubs)");
  s += "#include \"" + iface.name + "_t.h\"\n\n#include <stdlib.h>\n#include <string.h>\n\n";
  s += "#include \"teemate/call_wire.h\"\n#include \"teemate/trusted/runtime.h\"\n\nnamespace {\n\n";
  s += kCodes;
  s += "\n";
  for (const Function& f : iface.ecalls) {
    s += sig_comment(f);
    s += callee(f, "tm_parse_" + f.name, "::" + f.name);
    s += "int tm_handle_" + f.name + "(tm_call* tm_c) {\n";
    s += "  if (tm_c->scalars[0] != " + u64_literal(f.hash) + ") return tm_k_ERR_INTERFACE;\n";
    s += "  if (tm_c->nbufs != 2 || tm_c->bufs[0].direction != TM_BUF_IN || tm_c->bufs[1].direction != TM_BUF_OUT) {\n";
    s += "    return tm_k_ERR_INVALID;\n  }\n";
    s += "  size_t tm_used = 0;\n";
    s += "  const int tm_status = tm_parse_" + f.name +
         "(tm_c->bufs[0].data, tm_c->bufs[0].size, tm_c->bufs[1].data, tm_c->bufs[1].size, &tm_used);\n";
    s += "  // tm_app_error during the function fails the call with the application's error.\n";
    s += "  if (tm_status == tm_k_OK && tm_app_error_pending()) return tm_k_ERR_APP;\n";
    s += "  if (tm_status == tm_k_OK) tm_c->bufs[1].out_size = tm_used;\n";
    s += "  return tm_status;\n}\n";
    // The runtime's own ECALLs are never in the application's table: the
    // runtime dispatches them itself, after its own checks (the control
    // ECALLs' token), through NAME_dispatch_ecall below.
    if (!is_runtime(iface)) s += "TM_ECALL(" + hex(f.id) + ", tm_handle_" + f.name + ");\n";
    s += "\n";
  }
  s += "}  // namespace\n\n";
  if (is_runtime(iface) && !iface.ecalls.empty()) {
    s += "int " + iface.name + "_dispatch_ecall(uint32_t tm_id, tm_call* tm_c) {\n  switch (tm_id) {\n";
    for (const Function& f : iface.ecalls) s += "    case " + hex(f.id) + ": return tm_handle_" + f.name + "(tm_c);\n";
    s += "    default: (void)tm_c; return tm_k_ERR_UNKNOWN_CALL;\n  }\n}\n\n";
  }
  for (const Function& f : iface.ocalls) {
    std::string params = f.has_return ? f.ret.spelling + "* tm_ret" : "";
    for (const Param& p : f.params) params += (params.empty() ? "" : ", ") + decl(p);
    s += sig_comment(f);
    s += "extern \"C\" int " + f.name + "(" + (params.empty() ? "void" : params) + ") {\n";
    s += caller(f, false);
    s += "  if (!tm_ok) {\n    ::free(tm_req);\n    ::free(tm_resp);\n    return tm_k_ERR_INVALID;\n  }\n";
    s += "  tm_call tm_frame;\n  ::memset(&tm_frame, 0, sizeof tm_frame);\n";
    s += "  tm_frame.id = " + hex(f.id) + ";\n  tm_frame.nbufs = 2;\n  tm_frame.scalars[0] = " + u64_literal(f.hash) + ";\n";
    s += "  tm_frame.bufs[0].data = tm_req;\n  tm_frame.bufs[0].size = tm_req_len;\n  tm_frame.bufs[0].direction = TM_BUF_IN;\n";
    s += "  tm_frame.bufs[1].data = tm_resp;\n  tm_frame.bufs[1].size = tm_resp_len;\n  tm_frame.bufs[1].direction = TM_BUF_OUT;\n";
    s += std::string("  int tm_rc = ") + (f.switchless ? "tm_ocall_switchless" : "tm_ocall") + "(&tm_frame);\n";
    s += "  // The host's answer: exactly the length this interface gives, every field checked.\n";
    s += "  if (tm_rc == tm_k_OK && tm_frame.bufs[1].out_size != tm_resp_len) tm_rc = tm_k_ERR_OCALL_FAILED;\n";
    s += "  if (tm_rc == tm_k_OK) {\n    tm_rc = [&]() -> int {\n";
    s += response_code(f, false, "return tm_k_ERR_OCALL_FAILED;");
    s += "      return tm_k_OK;\n    }();\n  }\n";
    s += "  ::free(tm_req);\n  ::free(tm_resp);\n  return tm_rc;\n}\n\n";
  }
  return s;
}

std::string untrusted_header(const Interface& iface) {
  std::string guard = "TEEMATE_EDL_" + iface.name + "_U_H_";
  std::string s = header_comment(iface, "the host side");
  s += "#ifndef " + guard + "\n#define " + guard + "\n\n#include <stddef.h>\n#include <stdint.h>\n#include <sys/types.h>\n\n";
  s += "#include \"teemate/enclave.h\"\n\n";
  s += "// ECALL proxies: each returns the call's Status (an application error of\n"
       "// the enclave arrives as Code::kApplication) and stores the enclave\n"
       "// function's return value through `tm_ret` (may be null). They call\n"
       "// through any teemate::CallTarget: an Enclave handle, or a transport of\n"
       "// your own.\n";
  for (const Function& f : iface.ecalls) {
    std::string params = "::teemate::CallTarget& tm_enclave";
    if (f.has_return) params += ", " + f.ret.spelling + "* tm_ret";
    for (const Param& p : f.params) params += ", " + decl(p);
    s += sig_comment(f);
    s += "::teemate::Status " + f.name + "(" + params + ");\n";
  }
  s += "\n// OCALLs: implement these in the host program; " + iface.name +
       "_register_ocalls installs\n// their handlers on an enclave handle (each process that calls the enclave).\n";
  for (const Function& f : iface.ocalls) {
    s += ret_type(f) + " " + f.name + "(" + param_list(f) + ");\n";
  }
  s += "::teemate::Status " + iface.name + "_register_ocalls(::teemate::Enclave& tm_enclave);\n";
  s += "// Or route them yourself: serves OCALL `tm_id` if it is one of this interface's\n"
       "// (TM_ERR_UNKNOWN_CALL otherwise), for an OcallHandler that multiplexes.\n";
  s += "int32_t " + iface.name + "_dispatch_ocall(uint32_t tm_id, ::teemate::CallArgs& tm_a);\n";
  s += "\n#endif\n";
  return s;
}

std::string untrusted_source(const Interface& iface) {
  std::string s = header_comment(iface, "the host side (ECALL proxies, OCALL handlers)");
  s += "#include \"" + iface.name + "_u.h\"\n\n#include <string.h>\n\n#include <vector>\n\n";
  s += "#include \"teemate/call_wire.h\"\n#include \"teemate/status_codes.h\"\n\nnamespace {\n\n";
  s += kCodes;
  s += "\n";
  for (const Function& f : iface.ocalls) {
    s += sig_comment(f);
    s += callee(f, "tm_parse_" + f.name, "::" + f.name);
    s += "int32_t tm_handle_" + f.name + "(::teemate::CallArgs& tm_a) {\n";
    s += "  using tm_Dir = ::teemate::CallArgs::Dir;\n";
    s += "  if (tm_a.scalar_value(0) != " + u64_literal(f.hash) + ") return tm_k_ERR_INTERFACE;\n";
    s += "  if (tm_a.buffer_count() != 2 || tm_a.buffer(0).dir != tm_Dir::kIn || tm_a.buffer(1).dir != tm_Dir::kOut) return tm_k_ERR_INVALID;\n";
    s += "  size_t tm_used = 0;\n";
    s += "  const int tm_status = tm_parse_" + f.name + "(tm_a.buffer(0).data, tm_a.buffer(0).size, tm_a.buffer(1).data, tm_a.buffer(1).size, &tm_used);\n";
    s += "  if (tm_status == tm_k_OK) tm_a.buffer(1).out_size = tm_used;\n";
    s += "  return tm_status;\n}\n\n";
  }
  s += "}  // namespace\n\n";
  for (const Function& f : iface.ecalls) {
    std::string params = "::teemate::CallTarget& tm_enclave";
    if (f.has_return) params += ", " + f.ret.spelling + "* tm_ret";
    for (const Param& p : f.params) params += ", " + decl(p);
    s += sig_comment(f);
    s += "::teemate::Status " + f.name + "(" + params + ") {\n";
    s += caller(f, true);
    s += "  if (!tm_ok) return ::teemate::internal_error(\"" + f.name + ": request layout\");\n";
    s += "  ::teemate::CallArgs tm_args;\n";
    s += "  tm_args.scalar(0, " + u64_literal(f.hash) + ").in(::std::span<const uint8_t>(tm_req.data(), tm_req_len)).out(tm_resp);\n";
    s += std::string("  ::teemate::Status tm_st = tm_enclave.") + (f.switchless ? "call_switchless(" : "call(") +
         hex(f.id) + ", tm_args);\n";
    s += "  if (!tm_st.ok()) return tm_st.with_context(\"" + f.name + "\");\n";
    s += "  if (tm_args.buffer(1).out_size != tm_resp_len) {\n";
    s += "    return ::teemate::corrupt(\"" + f.name + ": the enclave answered \" + ::std::to_string(tm_args.buffer(1).out_size) + \" bytes, the interface says \" + ::std::to_string(tm_resp_len));\n";
    s += "  }\n";
    s += response_code(f, true, "return ::teemate::corrupt(\"" + f.name + ": malformed answer from the enclave\");");
    s += "  return {};\n}\n\n";
  }
  s += "int32_t " + iface.name + "_dispatch_ocall(uint32_t tm_id, ::teemate::CallArgs& tm_a) {\n";
  s += "  switch (tm_id) {\n";
  for (const Function& f : iface.ocalls) s += "    case " + hex(f.id) + ": return tm_handle_" + f.name + "(tm_a);\n";
  s += "    default: (void)tm_a; return tm_k_ERR_UNKNOWN_CALL;\n  }\n}\n\n";
  s += "::teemate::Status " + iface.name + "_register_ocalls(::teemate::Enclave& tm_enclave) {\n";
  s += "  [[maybe_unused]] ::teemate::Status tm_st;\n";
  if (iface.ocalls.empty()) s += "  (void)tm_enclave;\n";
  for (const Function& f : iface.ocalls) {
    s += "  tm_st = tm_enclave.set_ocall(" + hex(f.id) + ", tm_handle_" + f.name + ");\n";
    s += "  if (!tm_st.ok()) return tm_st.with_context(\"" + iface.name + "_register_ocalls: " + f.name + "\");\n";
  }
  s += "  return {};\n}\n";
  return s;
}

}  // namespace

Generated generate(const Interface& iface) {
  return {trusted_header(iface), trusted_source(iface), untrusted_header(iface), untrusted_source(iface)};
}

}  // namespace teemate::edl
