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
#include <cstdio>

#include "host/edl/edl.h"

namespace teemate::edl {
namespace {

std::string hex64(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%016llxull", static_cast<unsigned long long>(v));
  return b;
}
std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%x", v);
  return b;
}

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
  s += "  if (!teemate::wire::checked_mul(" + n + ", " + std::to_string(mul) + "ull, &" + var + ") || " + var +
       " > kMaxBytes) " + fail + "\n";
  return s;
}

// The error-code constants, generated from the status table on both sides.
const char* kCodes =
    "#define TM_EDL_CODE_(name, value, desc) [[maybe_unused]] constexpr int k_##name = value;\n"
    "TEEMATE_STATUS_CODES(TM_EDL_CODE_)\n"
    "#undef TM_EDL_CODE_\n"
    "// Largest single buffer a typed call carries (the enclave's max_call_buffer\n"
    "// is the real limit; this only keeps size arithmetic far from overflow).\n"
    "[[maybe_unused]] constexpr uint64_t kMaxBytes = uint64_t{1} << 40;\n";

// The callee side: parse the request, lay out the response, call `impl`.
// Returns k_OK or an error code; sets *out_used.
std::string callee(const Function& f, const std::string& fn_name, const std::string& impl) {
  std::string s = "int " + fn_name +
                  "(const void* in_data, size_t in_size, void* out_data, size_t out_cap, size_t* out_used) {\n";
  s += "  teemate::wire::Reader in(in_data, in_size);\n";
  s += "  [[maybe_unused]] uint64_t w_ = 0;\n";
  for (const Param& p : f.params) {
    if (p.pointer) continue;
    s += "  if (!in.word(&w_) || !teemate::wire::fits<" + p.type.spelling + ">(w_)) return k_ERR_INVALID;\n";
    s += "  " + p.type.spelling + " " + p.name + " = teemate::wire::from_word<" + p.type.spelling + ">(w_);\n";
  }
  s += "  size_t resp_len_ = 8;\n";
  for (const Param& p : f.params) {
    if (!p.pointer) continue;
    const std::string T = (p.is_const ? "const " : "") + pointee(p);
    if (p.user_check) {
      s += "  if (!in.word(&w_)) return k_ERR_INVALID;\n";
      s += "  " + T + "* " + p.name + " = reinterpret_cast<" + T + "*>(static_cast<uintptr_t>(w_));\n";
      continue;
    }
    s += "  uint64_t present_" + p.name + " = 0;\n";
    s += "  if (!in.word(&present_" + p.name + ") || present_" + p.name + " > teemate::wire::kPresent) return k_ERR_INVALID;\n";
    if (p.string) {
      s += "  const char* " + p.name + " = nullptr;\n";
      s += "  if (present_" + p.name + ") {\n";
      s += "    uint64_t len_ = 0;\n";
      s += "    const uint8_t* d_ = nullptr;\n";
      s += "    if (!in.word(&len_) || len_ == 0 || len_ > in.left() || !in.bytes(static_cast<size_t>(len_), &d_)) return k_ERR_INVALID;\n";
      s += "    if (d_[len_ - 1] != 0 || strnlen(reinterpret_cast<const char*>(d_), len_) != len_ - 1) return k_ERR_INVALID;\n";
      s += "    " + p.name + " = reinterpret_cast<const char*>(d_);\n";
      s += "  }\n";
      continue;
    }
    s += size_code(p, "bytes_" + p.name, "return k_ERR_INVALID;");
    if (copies_in(p)) {
      s += "  const uint8_t* src_" + p.name + " = nullptr;\n";
      s += "  if (present_" + p.name + " && !in.bytes(static_cast<size_t>(bytes_" + p.name + "), &src_" + p.name +
           ")) return k_ERR_INVALID;\n";
    }
    if (copies_out(p)) {
      s += "  if (present_" + p.name + " && !teemate::wire::checked_add(resp_len_, teemate::wire::padded(static_cast<size_t>(bytes_" +
           p.name + ")), &resp_len_)) return k_ERR_INVALID;\n";
    }
  }
  s += "  if (in.left() != 0) return k_ERR_INVALID;  // exactly the request this interface describes\n";
  s += "  if (out_cap < resp_len_) return k_ERR_INVALID;\n";
  s += "  teemate::wire::Writer out(out_data, out_cap);\n";
  s += "  uint8_t* ret_at_ = out.reserve(8);\n";
  s += "  if (!ret_at_) return k_ERR_INVALID;\n";
  for (const Param& p : f.params) {
    if (!sized(p)) continue;
    const std::string T = (p.is_const ? "const " : "") + pointee(p);
    if (copies_out(p)) {
      s += "  " + T + "* " + p.name + " = nullptr;\n";
      s += "  if (present_" + p.name + ") {\n";
      s += "    uint8_t* at_ = out.reserve(static_cast<size_t>(bytes_" + p.name + "));\n";
      s += "    if (!at_) return k_ERR_INVALID;\n";
      if (copies_in(p)) s += "    memcpy(at_, src_" + p.name + ", static_cast<size_t>(bytes_" + p.name + "));\n";
      else s += "    memset(at_, 0, static_cast<size_t>(bytes_" + p.name + "));\n";
      s += "    " + p.name + " = reinterpret_cast<" + T + "*>(at_);\n";
      s += "  }\n";
    } else {
      s += "  " + T + "* " + p.name + " = present_" + p.name + " ? reinterpret_cast<" + T +
           "*>(const_cast<uint8_t*>(src_" + p.name + ")) : nullptr;\n";
    }
  }
  if (f.has_return) {
    s += "  const " + f.ret.spelling + " ret_ = " + impl + "(" + arg_list(f) + ");\n";
    s += "  const uint64_t ret_word_ = teemate::wire::to_word<" + f.ret.spelling + ">(ret_);\n";
  } else {
    s += "  " + impl + "(" + arg_list(f) + ");\n";
    s += "  const uint64_t ret_word_ = 0;\n";
  }
  s += "  memcpy(ret_at_, &ret_word_, 8);\n";
  s += "  *out_used = out.used();\n";
  s += "  return k_OK;\n}\n\n";
  return s;
}

// The caller side: sizes, the request, and (after the call) the response.
// `host` selects the host proxy (Status, std::vector) or the enclave OCALL
// stub (int, malloc).
std::string caller(const Function& f, bool host) {
  const std::string fail_size = host ? "return teemate::invalid_argument(\"" + f.name + ": a buffer size is too large\");"
                                     : "return k_ERR_TOO_LARGE;";
  std::string s;
  s += "  [[maybe_unused]] uint64_t w_ = 0;\n";
  s += "  size_t req_len_ = 0, resp_len_ = 8;\n";
  for (const Param& p : f.params) {
    if (!p.pointer) {
      s += "  req_len_ += 8;\n";
      continue;
    }
    s += "  req_len_ += 8;\n";
    if (p.user_check) continue;
    if (p.string) {
      s += "  const size_t len_" + p.name + " = " + p.name + " ? strlen(" + p.name + ") + 1 : 0;\n";
      s += "  if (" + p.name + " && (len_" + p.name + " > kMaxBytes || !teemate::wire::checked_add(req_len_, 8 + teemate::wire::padded(len_" +
           p.name + "), &req_len_))) " + fail_size + "\n";
      continue;
    }
    s += size_code(p, "bytes_" + p.name, fail_size);
    if (copies_in(p)) {
      s += "  if (" + p.name + " && !teemate::wire::checked_add(req_len_, teemate::wire::padded(static_cast<size_t>(bytes_" + p.name +
           ")), &req_len_)) " + fail_size + "\n";
    }
    if (copies_out(p)) {
      s += "  if (" + p.name + " && !teemate::wire::checked_add(resp_len_, teemate::wire::padded(static_cast<size_t>(bytes_" + p.name +
           ")), &resp_len_)) " + fail_size + "\n";
    }
  }
  if (host) {
    s += "  std::vector<uint8_t> req_(req_len_ ? req_len_ : 8), resp_(resp_len_);\n";
    s += "  teemate::wire::Writer w(req_.data(), req_len_);\n";
  } else {
    s += "  uint8_t* req_ = static_cast<uint8_t*>(malloc(req_len_ ? req_len_ : 8));\n";
    s += "  uint8_t* resp_ = static_cast<uint8_t*>(malloc(resp_len_));\n";
    s += "  if (!req_ || !resp_) {\n    free(req_);\n    free(resp_);\n    return k_ERR_NO_MEMORY;\n  }\n";
    s += "  teemate::wire::Writer w(req_, req_len_);\n";
  }
  s += "  bool ok_ = true;\n";
  for (const Param& p : f.params) {
    if (p.pointer) continue;
    s += "  ok_ = ok_ && w.word(teemate::wire::to_word<" + p.type.spelling + ">(" + p.name + "));\n";
  }
  for (const Param& p : f.params) {
    if (!p.pointer) continue;
    if (p.user_check) {
      s += "  ok_ = ok_ && w.word(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(" + p.name + ")));\n";
      continue;
    }
    s += "  ok_ = ok_ && w.word(" + p.name + " ? teemate::wire::kPresent : teemate::wire::kAbsent);\n";
    if (p.string) {
      s += "  if (" + p.name + ") ok_ = ok_ && w.word(len_" + p.name + ") && w.bytes(" + p.name + ", len_" + p.name + ");\n";
    } else if (copies_in(p)) {
      s += "  if (" + p.name + ") ok_ = ok_ && w.bytes(" + p.name + ", static_cast<size_t>(bytes_" + p.name + "));\n";
    }
  }
  return s;
}

std::string response_code(const Function& f, bool host, const std::string& fail) {
  std::string s;
  s += "  teemate::wire::Reader r(" + std::string(host ? "resp_.data()" : "resp_") + ", resp_len_);\n";
  s += "  if (!r.word(&w_)) " + fail + "\n";
  if (f.has_return) {
    s += "  if (!teemate::wire::fits<" + f.ret.spelling + ">(w_)) " + fail + "\n";
    s += "  if (ret) *ret = teemate::wire::from_word<" + f.ret.spelling + ">(w_);\n";
  }
  for (const Param& p : f.params) {
    if (!sized(p) || !copies_out(p)) continue;
    s += "  if (" + p.name + ") {\n";
    s += "    const uint8_t* d_ = nullptr;\n";
    s += "    if (!r.bytes(static_cast<size_t>(bytes_" + p.name + "), &d_)) " + fail + "\n";
    s += "    memcpy(" + p.name + ", d_, static_cast<size_t>(bytes_" + p.name + "));\n";
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
  s += "#include <sys/types.h>\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n";
  s += "/* ECALLs: implement these in the enclave program. */\n";
  for (const Function& f : iface.ecalls) {
    s += ret_type(f) + " " + f.name + "(" + param_list(f) + ");\n";
  }
  s += "\n/* OCALLs: call these; each returns TM_OK or a TM_ERR_* code (the host's\n"
       " * answer is checked before anything reaches the caller), and stores the\n"
       " * host function's return value through `ret` (may be NULL). */\n";
  for (const Function& f : iface.ocalls) {
    std::string params = f.has_return ? f.ret.spelling + "* ret" : "";
    for (const Param& p : f.params) params += (params.empty() ? "" : ", ") + decl(p);
    s += "int " + f.name + "(" + (params.empty() ? "void" : params) + ");\n";
  }
  s += "\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n";
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
    s += callee(f, "parse_" + f.name, "::" + f.name);
    s += "int handle_" + f.name + "(tm_call* call) {\n";
    s += "  if (call->scalars[0] != " + hex64(f.hash) + ") return k_ERR_INTERFACE;\n";
    s += "  if (call->nbufs != 2 || call->bufs[0].direction != TM_BUF_IN || call->bufs[1].direction != TM_BUF_OUT) {\n";
    s += "    return k_ERR_INVALID;\n  }\n";
    s += "  size_t used = 0;\n";
    s += "  const int rc = parse_" + f.name +
         "(call->bufs[0].data, call->bufs[0].size, call->bufs[1].data, call->bufs[1].size, &used);\n";
    s += "  // tm_app_error during the function fails the call with the application's error.\n";
    s += "  if (rc == k_OK && tm_app_error_pending()) return k_ERR_APP;\n";
    s += "  if (rc == k_OK) call->bufs[1].out_size = used;\n";
    s += "  return rc;\n}\n";
    s += "TM_ECALL(" + hex32(f.id) + ", handle_" + f.name + ");\n\n";
  }
  s += "}  // namespace\n\n";
  for (const Function& f : iface.ocalls) {
    std::string params = f.has_return ? f.ret.spelling + "* ret" : "";
    for (const Param& p : f.params) params += (params.empty() ? "" : ", ") + decl(p);
    s += sig_comment(f);
    s += "extern \"C\" int " + f.name + "(" + (params.empty() ? "void" : params) + ") {\n";
    s += caller(f, false);
    s += "  if (!ok_) {\n    free(req_);\n    free(resp_);\n    return k_ERR_INVALID;\n  }\n";
    s += "  tm_call c_;\n  memset(&c_, 0, sizeof c_);\n";
    s += "  c_.id = " + hex32(f.id) + ";\n  c_.nbufs = 2;\n  c_.scalars[0] = " + hex64(f.hash) + ";\n";
    s += "  c_.bufs[0].data = req_;\n  c_.bufs[0].size = req_len_;\n  c_.bufs[0].direction = TM_BUF_IN;\n";
    s += "  c_.bufs[1].data = resp_;\n  c_.bufs[1].size = resp_len_;\n  c_.bufs[1].direction = TM_BUF_OUT;\n";
    s += "  int rc_ = tm_ocall(&c_);\n";
    s += "  // The host's answer: exactly the length this interface gives, every field checked.\n";
    s += "  if (rc_ == k_OK && c_.bufs[1].out_size != resp_len_) rc_ = k_ERR_OCALL_FAILED;\n";
    s += "  if (rc_ == k_OK) {\n    rc_ = [&]() -> int {\n";
    s += response_code(f, false, "return k_ERR_OCALL_FAILED;");
    s += "      return k_OK;\n    }();\n  }\n";
    s += "  free(req_);\n  free(resp_);\n  return rc_;\n}\n\n";
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
       "// function's return value through `ret` (may be null).\n";
  for (const Function& f : iface.ecalls) {
    std::string params = "teemate::Enclave& enclave";
    if (f.has_return) params += ", " + f.ret.spelling + "* ret";
    for (const Param& p : f.params) params += ", " + decl(p);
    s += sig_comment(f);
    s += "teemate::Status " + f.name + "(" + params + ");\n";
  }
  s += "\n// OCALLs: implement these in the host program; " + iface.name +
       "_register_ocalls installs\n// their handlers on an enclave handle (each process that calls the enclave).\n";
  for (const Function& f : iface.ocalls) {
    s += ret_type(f) + " " + f.name + "(" + param_list(f) + ");\n";
  }
  s += "teemate::Status " + iface.name + "_register_ocalls(teemate::Enclave& enclave);\n";
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
    s += callee(f, "parse_" + f.name, "::" + f.name);
    s += "int32_t handle_" + f.name + "(teemate::CallArgs& a) {\n";
    s += "  using Dir = teemate::CallArgs::Dir;\n";
    s += "  if (a.scalar_value(0) != " + hex64(f.hash) + ") return k_ERR_INTERFACE;\n";
    s += "  if (a.buffer_count() != 2 || a.buffer(0).dir != Dir::kIn || a.buffer(1).dir != Dir::kOut) return k_ERR_INVALID;\n";
    s += "  size_t used = 0;\n";
    s += "  const int rc = parse_" + f.name + "(a.buffer(0).data, a.buffer(0).size, a.buffer(1).data, a.buffer(1).size, &used);\n";
    s += "  if (rc == k_OK) a.buffer(1).out_size = used;\n";
    s += "  return rc;\n}\n\n";
  }
  s += "}  // namespace\n\n";
  for (const Function& f : iface.ecalls) {
    std::string params = "teemate::Enclave& enclave";
    if (f.has_return) params += ", " + f.ret.spelling + "* ret";
    for (const Param& p : f.params) params += ", " + decl(p);
    s += sig_comment(f);
    s += "teemate::Status " + f.name + "(" + params + ") {\n";
    s += caller(f, true);
    s += "  if (!ok_) return teemate::internal_error(\"" + f.name + ": request layout\");\n";
    s += "  teemate::CallArgs args;\n";
    s += "  args.scalar(0, " + hex64(f.hash) + ").in(std::span<const uint8_t>(req_.data(), req_len_)).out(resp_);\n";
    s += "  teemate::Status st_ = enclave.call(" + hex32(f.id) + ", args);\n";
    s += "  if (!st_.ok()) return st_.with_context(\"" + f.name + "\");\n";
    s += "  if (args.buffer(1).out_size != resp_len_) {\n";
    s += "    return teemate::corrupt(\"" + f.name + ": the enclave answered \" + std::to_string(args.buffer(1).out_size) + \" bytes, the interface says \" + std::to_string(resp_len_));\n";
    s += "  }\n";
    s += response_code(f, true, "return teemate::corrupt(\"" + f.name + ": malformed answer from the enclave\");");
    s += "  return {};\n}\n\n";
  }
  s += "teemate::Status " + iface.name + "_register_ocalls(teemate::Enclave& enclave) {\n";
  s += "  [[maybe_unused]] teemate::Status st;\n";
  for (const Function& f : iface.ocalls) {
    s += "  st = enclave.set_ocall(" + hex32(f.id) + ", handle_" + f.name + ");\n";
    s += "  if (!st.ok()) return st.with_context(\"" + iface.name + "_register_ocalls: " + f.name + "\");\n";
  }
  s += "  return {};\n}\n";
  return s;
}

}  // namespace

Generated generate(const Interface& iface) {
  return {trusted_header(iface), trusted_source(iface), untrusted_header(iface), untrusted_source(iface)};
}

}  // namespace teemate::edl
