// Parser of typed-call interface files (an EDL subset):
//
//   enclave {
//     trusted {
//       public int kv_put([in, size=key_len] const char* key, size_t key_len);
//     };
//     untrusted {
//       void host_log([in, string] const char* msg) transition_using_threads;
//     };
//   };
//
// Every error names file:line and the function or parameter at fault. Only
// scalar types and pointers to them are accepted; anything else is refused
// with a message saying what to write instead. Never generates code.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <span>

#include "host/edl/edl.h"

namespace teemate::edl {
namespace {

struct Token {
  enum Kind { kIdent, kNumber, kPunct, kEnd } kind = kEnd;
  std::string text;
  int line = 0;
};

Result<std::vector<Token>> tokenize(std::string_view s, const std::string& file) {
  std::vector<Token> out;
  int line = 1;
  size_t i = 0;
  auto err = [&](const std::string& m) { return corrupt(file + ":" + std::to_string(line) + ": " + m); };
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\n') {
      ++line;
      ++i;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '/' && i + 1 < s.size() && s[i + 1] == '/') {
      while (i < s.size() && s[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
      const size_t end = s.find("*/", i + 2);
      if (end == std::string_view::npos) return err("unterminated /* comment");
      for (size_t k = i; k < end; ++k) line += s[k] == '\n';
      i = end + 2;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Token::kIdent, std::string(s.substr(i, j - i)), line});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])))) ++j;
      out.push_back({Token::kNumber, std::string(s.substr(i, j - i)), line});
      i = j;
    } else if (std::string_view("{}()[];,*=").find(c) != std::string_view::npos) {
      out.push_back({Token::kPunct, std::string(1, c), line});
      ++i;
    } else {
      char b[64];
      std::snprintf(b, sizeof b, "unexpected character '%c' (0x%02x)", std::isprint(static_cast<unsigned char>(c)) ? c : '?',
                    static_cast<unsigned>(static_cast<unsigned char>(c)));
      return err(b);
    }
  }
  out.push_back({Token::kEnd, "end of file", line});
  return out;
}

// The scalar types the wire carries, by spelling (multi-word ones joined by a space).
const std::map<std::string, ScalarType>& scalar_types() {
  static const std::map<std::string, ScalarType> types = [] {
    std::map<std::string, ScalarType> t;
    auto add = [&](const std::string& s, uint32_t size, bool integer = true) { t[s] = {s, size, integer}; };
    add("bool", 1);
    add("char", 1);
    add("signed char", 1);
    add("unsigned char", 1);
    add("int8_t", 1);
    add("uint8_t", 1);
    add("short", 2);
    add("unsigned short", 2);
    add("int16_t", 2);
    add("uint16_t", 2);
    add("int", 4);
    add("unsigned", 4);
    add("unsigned int", 4);
    add("int32_t", 4);
    add("uint32_t", 4);
    add("long", 8);
    add("unsigned long", 8);
    add("long long", 8);
    add("unsigned long long", 8);
    add("int64_t", 8);
    add("uint64_t", 8);
    add("size_t", 8);
    add("ssize_t", 8);
    add("intptr_t", 8);
    add("uintptr_t", 8);
    add("float", 4, false);
    add("double", 8, false);
    return t;
  }();
  return types;
}

// The largest max_call_buffer an enclave can have: a constant size= or
// count= beyond it could never be carried.
constexpr uint64_t kMaxConstantBytes = uint64_t{1} << 30;

// Names no function or parameter may take: C and C++ keywords, names the
// generated code itself uses or calls, and the runtime's prefixes.
bool is_reserved(const std::string& n) {
  static const std::set<std::string> kReserved = {
      // C and C++ keywords
      "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break", "case", "catch",
      "char", "char8_t", "char16_t", "char32_t", "class", "compl", "concept", "const", "consteval", "constexpr",
      "constinit", "const_cast", "continue", "co_await", "co_return", "co_yield", "decltype", "default", "delete",
      "do", "double", "dynamic_cast", "else", "enum", "explicit", "export", "extern", "false", "float", "for",
      "friend", "goto", "if", "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq",
      "nullptr", "operator", "or", "or_eq", "private", "protected", "public", "register", "reinterpret_cast",
      "requires", "restrict", "return", "short", "signed", "sizeof", "static", "static_assert", "static_cast",
      "struct", "switch", "template", "this", "thread_local", "throw", "true", "try", "typedef", "typeid",
      "typename", "union", "unsigned", "using", "virtual", "void", "volatile", "wchar_t", "while", "xor", "xor_eq",
      "_Alignas", "_Alignof", "_Atomic", "_Bool", "_Complex", "_Generic", "_Imaginary", "_Noreturn",
      "_Static_assert", "_Thread_local",
      // what generated code names or calls, and the program entry
      "main", "memcpy", "memset", "strlen", "strnlen", "malloc", "free", "teemate", "std", "NULL",
      // type and macro names of the headers it includes (review defect: a
      // parameter named size_t or linux made code that did not compile),
      // and the GNU dialects' predefined macros
      "offsetof", "va_list", "va_start", "va_arg", "va_end", "va_copy", "FILE", "EOF", "BUFSIZ", "EXIT_SUCCESS",
      "EXIT_FAILURE", "RAND_MAX", "MB_CUR_MAX", "errno", "assert", "typeof", "linux", "unix", "i386",
  };
  // POSIX reserves the _t suffix for types; C reserves _ plus a capital.
  const bool type_like = n.size() > 2 && n.compare(n.size() - 2, 2, "_t") == 0;
  const bool c_reserved = n.size() > 1 && n[0] == '_' && n[1] >= 'A' && n[1] <= 'Z';
  // The limit macros of <stdint.h> and <limits.h>: INT_MAX, SIZE_MAX, UINT64_C...
  bool limit_macro = false;
  for (const char* suffix : {"_MAX", "_MIN", "_C", "_WIDTH"}) {
    const size_t k = std::strlen(suffix);
    const bool upper = std::all_of(n.begin(), n.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; });
    if (upper && n.size() > k && n.compare(n.size() - k, k, suffix) == 0) limit_macro = true;
  }
  return kReserved.count(n) || type_like || c_reserved || limit_macro || n.rfind("tm_", 0) == 0 ||
         n.rfind("TM_", 0) == 0 || n.rfind("teemate_", 0) == 0 || n.rfind("__", 0) == 0;
}

class Parser {
 public:
  Parser(std::vector<Token> toks, std::string file, bool runtime, std::span<const std::string_view> linked)
      : t_(std::move(toks)), file_(std::move(file)), runtime_(runtime), linked_(linked) {}

  Result<Interface> parse(const std::string& name) {
    Interface iface;
    iface.name = name;
    TM_RETURN_IF_ERROR(expect_ident("enclave"));
    TM_RETURN_IF_ERROR(expect("{"));
    bool seen_trusted = false, seen_untrusted = false;
    while (!is("}")) {
      const Token& sec = peek();
      if (sec.kind != Token::kIdent || (sec.text != "trusted" && sec.text != "untrusted")) {
        return err(sec, "expected 'trusted {' or 'untrusted {', found '" + sec.text + "'");
      }
      const bool trusted = sec.text == "trusted";
      bool& seen = trusted ? seen_trusted : seen_untrusted;
      if (seen) return err(sec, "a second '" + sec.text + "' section: put all its functions in one");
      seen = true;
      next();
      TM_RETURN_IF_ERROR(expect("{"));
      while (!is("}")) {
        TM_ASSIGN_OR_RETURN(Function f, function(trusted));
        (trusted ? iface.ecalls : iface.ocalls).push_back(std::move(f));
      }
      next();
      TM_RETURN_IF_ERROR(expect(";"));
    }
    next();
    if (is(";")) next();
    if (peek().kind != Token::kEnd) return err(peek(), "text after the end of 'enclave { ... };'");
    TM_RETURN_IF_ERROR(check_names(iface));
    // Each interface gets its own block of ids, chosen by its name, so that
    // several interfaces coexist in one enclave (teemate pack refuses an
    // image where two calls still share an id).
    for (auto* list : {&iface.ecalls, &iface.ocalls}) {
      if (list->size() > kIdsPerInterface) {
        return corrupt(file_ + ": more than " + std::to_string(kIdsPerInterface) + " functions in one section");
      }
    }
    TM_ASSIGN_OR_RETURN(const uint32_t first, interface_first_id(name));
    const uint32_t room = runtime_ ? kIdsPerRuntimeInterface : kIdsPerInterface;
    for (const auto* list : {&iface.ecalls, &iface.ocalls}) {
      if (list->size() > room) {
        return corrupt(file_ + ": " + std::to_string(list->size()) + " functions in one section; an interface has room for " +
                       std::to_string(room));
      }
    }
    for (size_t i = 0; i < iface.ecalls.size(); ++i) iface.ecalls[i].id = first + static_cast<uint32_t>(i);
    for (size_t i = 0; i < iface.ocalls.size(); ++i) iface.ocalls[i].id = first + static_cast<uint32_t>(i);
    for (auto* list : {&iface.ecalls, &iface.ocalls}) {
      for (Function& f : *list) f.hash = fnv1a(canonical_signature(f));
    }
    return iface;
  }

 private:
  const Token& peek() const { return t_[pos_]; }
  const Token& next() { return t_[pos_ < t_.size() - 1 ? pos_++ : pos_]; }
  bool is(const char* p) const { return peek().kind == Token::kPunct && peek().text == p; }
  bool is_ident(const char* w) const { return peek().kind == Token::kIdent && peek().text == w; }
  Status err(const Token& at, const std::string& m) const {
    return corrupt(file_ + ":" + std::to_string(at.line) + ": " + m);
  }
  Status expect(const char* p) {
    if (!is(p)) return err(peek(), std::string("expected '") + p + "', found '" + peek().text + "'");
    next();
    return {};
  }
  Status expect_ident(const char* w) {
    if (!is_ident(w)) return err(peek(), std::string("expected '") + w + "', found '" + peek().text + "'");
    next();
    return {};
  }

  static uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
    return h;
  }

  // A type made of one or more words ("unsigned long long"), or "void".
  Result<std::pair<ScalarType, bool>> type_words(const std::string& what) {
    const Token& first = peek();
    if (first.kind != Token::kIdent) return err(first, "expected a type for " + what + ", found '" + first.text + "'");
    std::string spelled = next().text;
    static const std::set<std::string> joinable = {"unsigned", "signed", "long", "short", "int", "char"};
    while (peek().kind == Token::kIdent && joinable.count(spelled.substr(spelled.rfind(' ') + 1)) &&
           joinable.count(peek().text)) {
      spelled += " " + next().text;
    }
    if (spelled == "void") return std::make_pair(ScalarType{"void", 1, true}, true);
    auto it = scalar_types().find(spelled);
    if (it == scalar_types().end()) {
      return err(first, "type '" + spelled + "' of " + what +
                            " is not supported: typed calls carry scalar types (int, uint64_t, size_t, double, "
                            "...) and pointers to them; pass a struct as [in, size=...] const uint8_t*");
    }
    return std::make_pair(it->second, false);
  }

  Result<Function> function(bool trusted) {
    Function f;
    f.trusted = trusted;
    f.line = peek().line;
    if (is_ident("public")) {
      if (!trusted) return err(peek(), "'public' applies to trusted functions only");
      next();
    }
    const Token& ret_tok = peek();
    TM_ASSIGN_OR_RETURN(auto ret, type_words("the return value"));
    if (is("*")) return err(ret_tok, "a function cannot return a pointer; return a status and pass an [out] buffer");
    f.has_return = !ret.second;
    f.ret = ret.first;
    const Token& name = peek();
    if (name.kind != Token::kIdent) return err(name, "expected a function name, found '" + name.text + "'");
    // A type keyword where the name goes is a return type this generator
    // does not know ("long double"), not a badly chosen name.
    for (const char* word : {"double", "float", "int", "long", "short", "char", "signed", "unsigned"}) {
      if (name.text == word) {
        return err(name, "unsupported return type (\"" + name.text + "\" after the type; the supported scalar types are "
                         "listed in docs/typed-calls.md)");
      }
    }
    f.name = next().text;
    if (reserved(f.name)) {
      return err(name, "function name '" + f.name +
                           "' is reserved (a C/C++ keyword, a name the generated code uses, or a tm_/teemate_/__ prefix)");
    }
    if (std::binary_search(linked_.begin(), linked_.end(), std::string_view(f.name))) {
      return err(name, "function name '" + f.name +
                           "' is a function or variable of the C library or runtime every enclave links: the "
                           "generated definition would silently replace it at link time; choose another name");
    }
    TM_RETURN_IF_ERROR(expect("("));
    if (is_ident("void") && t_[pos_ + 1].kind == Token::kPunct && t_[pos_ + 1].text == ")") next();
    while (!is(")")) {
      if (!f.params.empty()) TM_RETURN_IF_ERROR(expect(","));
      TM_ASSIGN_OR_RETURN(Param p, param(f.name));
      f.params.push_back(std::move(p));
      if (f.params.size() > kMaxParams) {
        return err(peek(), f.name + ": more than " + std::to_string(kMaxParams) + " parameters");
      }
    }
    next();
    if (is_ident("transition_using_threads")) {
      next();
      f.switchless = true;
    }
    if (!is(";") && peek().kind == Token::kIdent) {
      if (f.switchless && peek().text == "transition_using_threads") {
        return err(peek(), f.name + ": transition_using_threads is given twice");
      }
      return err(peek(), f.name + ": unknown function attribute '" + peek().text +
                             "' (the one accepted after the parameters is transition_using_threads)");
    }
    TM_RETURN_IF_ERROR(expect(";"));
    TM_RETURN_IF_ERROR(check_function(f));
    return f;
  }

  Result<Param> param(const std::string& fn) {
    Param p;
    p.line = peek().line;
    const Token& start = peek();
    bool has_attrs = false;
    if (is("[")) {
      has_attrs = true;
      next();
      bool in = false, out = false;
      for (;;) {
        const Token& a = peek();
        if (a.kind != Token::kIdent) return err(a, fn + ": expected an attribute, found '" + a.text + "'");
        next();
        if (a.text == "in") {
          in = true;
        } else if (a.text == "out") {
          out = true;
        } else if (a.text == "string") {
          p.string = true;
        } else if (a.text == "user_check") {
          p.user_check = true;
        } else if (a.text == "size" || a.text == "count") {
          if (p.has_size) return err(a, fn + ": more than one size= or count=");
          TM_RETURN_IF_ERROR(expect("="));
          p.has_size = true;
          p.size_is_count = a.text == "count";
          const Token& v = peek();
          if (v.kind == Token::kNumber) {
            char* end = nullptr;
            errno = 0;
            p.size_const = std::strtoull(v.text.c_str(), &end, 0);
            if (!end || *end || p.size_const == 0 || errno == ERANGE) {
              return err(v, fn + ": " + a.text + "=" + v.text + " is not a positive number that fits 64 bits");
            }
          } else if (v.kind == Token::kIdent) {
            p.size_param = v.text;
          } else {
            return err(v, fn + ": " + a.text + "= needs a number or a parameter name");
          }
          next();
        } else {
          return err(a, fn + ": unknown attribute '" + a.text +
                            "' (known: in, out, string, user_check, size=, count=)");
        }
        if (is("]")) break;
        TM_RETURN_IF_ERROR(expect(","));
      }
      next();
      p.dir = in && out ? Direction::kInOut : in ? Direction::kIn : out ? Direction::kOut : Direction::kNone;
    }
    if (is_ident("const")) {
      p.is_const = true;
      next();
    }
    TM_ASSIGN_OR_RETURN(auto type, type_words("a parameter of " + fn));
    p.type = type.first;
    const bool is_void = type.second;
    if (is("*")) {
      p.pointer = true;
      next();
      if (is("*")) return err(peek(), fn + ": pointers to pointers cannot be copied; use [user_check] void*");
    }
    const Token& nm = peek();
    if (nm.kind != Token::kIdent) return err(nm, fn + ": expected a parameter name, found '" + nm.text + "'");
    p.name = next().text;
    const std::string what = fn + ": parameter '" + p.name + "'";
    if (reserved(p.name)) {
      return err(nm, what + ": the name is reserved (a C/C++ keyword, a name the generated code uses, or a "
                            "tm_/teemate_/__ prefix)");
    }
    if (is_void && !p.pointer) return err(nm, what + " has type void");
    if (!p.pointer) {
      if (has_attrs) return err(start, what + " is not a pointer: attributes apply to pointers only");
      if (p.is_const) p.is_const = false;  // const on a by-value scalar changes nothing on the wire
      return p;
    }
    if (p.user_check) {
      if (p.dir != Direction::kNone || p.string || p.has_size) {
        return err(start, what + ": [user_check] takes no other attribute (it is passed as an address, unchecked)");
      }
      return p;
    }
    if (p.dir == Direction::kNone) {
      return err(start, what + " is a pointer: say [in], [out], [in, out] or [user_check]");
    }
    if (p.string) {
      if (p.dir != Direction::kIn) return err(start, what + ": [string] is for [in] strings only");
      if (p.type.spelling != "char") return err(start, what + ": [string] needs a char pointer");
      if (p.has_size) return err(start, what + ": a [string] carries its own length; drop size=/count=");
    }
    if (p.dir != Direction::kIn && p.is_const) return err(start, what + " is const but [out]: the callee could not write it");
    if (is_void && !p.has_size) return err(start, what + ": a void pointer needs size= (bytes)");
    if (is_void && p.size_is_count) return err(start, what + ": count= of a void pointer; use size= (bytes)");
    if (p.has_size && p.size_param.empty()) {
      // A constant size is known now: one that no call buffer can hold would
      // make every call fail at run time (review defect D5).
      const uint64_t elem = p.size_is_count && !is_void ? p.type.size : 1;
      if (p.size_const > kMaxConstantBytes / elem) {
        return err(start, what + ": " + (p.size_is_count ? "count=" : "size=") + std::to_string(p.size_const) + " is " +
                              (p.size_is_count ? "more bytes than" : "larger than") +
                              " the largest call buffer an enclave can have (1 GiB)");
      }
    }
    return p;
  }

  Status check_function(const Function& f) {
    std::set<std::string> names;
    for (const Param& p : f.params) {
      if (!names.insert(p.name).second) {
        return corrupt(file_ + ":" + std::to_string(p.line) + ": " + f.name + ": two parameters named '" + p.name + "'");
      }
    }
    for (const Param& p : f.params) {
      if (p.size_param.empty()) continue;
      const Param* sz = nullptr;
      for (const Param& q : f.params) {
        if (q.name == p.size_param) sz = &q;
      }
      const std::string at = file_ + ":" + std::to_string(p.line) + ": " + f.name + ": parameter '" + p.name + "'";
      if (!sz) return corrupt(at + ": its size names '" + p.size_param + "', which is no parameter of " + f.name);
      if (sz->pointer || !sz->type.is_integer || sz->type.spelling == "bool") {
        return corrupt(at + ": its size names '" + p.size_param + "', which is not an integer passed by value");
      }
    }
    return {};
  }

  Status check_names(const Interface& iface) {
    std::map<std::string, int> seen;
    for (const auto* list : {&iface.ecalls, &iface.ocalls}) {
      for (const Function& f : *list) {
        auto [it, fresh] = seen.emplace(f.name, f.line);
        if (!fresh) {
          return corrupt(file_ + ":" + std::to_string(f.line) + ": function '" + f.name + "' is declared twice (first at line " +
                         std::to_string(it->second) + ")");
        }
      }
    }
    return {};
  }

  bool reserved(const std::string& n) const {
    if (runtime_ && n.rfind("tm_", 0) == 0 && n.size() > 3) return false;
    return is_reserved(n);
  }

  std::vector<Token> t_;
  std::string file_;
  bool runtime_ = false;
  std::span<const std::string_view> linked_;  // sorted
  size_t pos_ = 0;
};

}  // namespace

Result<uint32_t> interface_first_id(const std::string& name) {
  if (name.rfind("tm_", 0) != 0) return kFirstTypedId + interface_block(name) * kIdsPerInterface;
  // The runtime's interfaces share block 0, each its fixed part of it.
  static const std::map<std::string, uint32_t> kRuntime = {{"tm_posix", 0}, {"tm_control", 1}, {"tm_runtime", 2}};
  auto it = kRuntime.find(name);
  if (it == kRuntime.end()) return invalid_argument("'" + name + "' is no runtime interface (tm_posix, tm_control, tm_runtime)");
  return kFirstTypedId + it->second * kIdsPerRuntimeInterface;
}

uint32_t interface_block(const std::string& name) {
  if (name.rfind("tm_", 0) == 0) return 0;
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return 1 + static_cast<uint32_t>(h % (kInterfaceBlocks - 1));
}

std::string canonical_signature(const Function& f) {
  std::string s = std::string(f.trusted ? "ecall " : "ocall ") + f.name + "(" +
                  (f.has_return ? f.ret.spelling : std::string("void")) + ";";
  for (const Param& p : f.params) {
    s += p.type.spelling;
    if (p.pointer) {
      s += "*";
      if (p.user_check) s += " user_check";
      if (p.dir == Direction::kIn || p.dir == Direction::kInOut) s += " in";
      if (p.dir == Direction::kOut || p.dir == Direction::kInOut) s += " out";
      if (p.string) s += " string";
      if (p.has_size) {
        s += p.size_is_count ? " count=" : " size=";
        s += p.size_param.empty() ? std::to_string(p.size_const) : p.size_param;
      }
    }
    s += " " + p.name + ";";
  }
  return s + ")";
}

Result<Interface> parse(std::string_view text, const std::string& file, const std::string& name, bool runtime,
                        std::span<const std::string_view> linked_symbols) {
  if (!std::is_sorted(linked_symbols.begin(), linked_symbols.end())) {
    return invalid_argument("edl::parse: the linked-symbol list must be sorted");
  }
  if ((name.rfind("tm_", 0) == 0) != runtime) {
    return invalid_argument(file + ": interface names starting with tm_ are the runtime's, and only they");
  }
  TM_ASSIGN_OR_RETURN(std::vector<Token> toks, tokenize(text, file));
  Parser parser(std::move(toks), file, runtime, linked_symbols);
  return parser.parse(name);
}

}  // namespace teemate::edl
