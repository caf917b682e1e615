// The typed-call interface language (an EDL subset): the model of an
// interface file, its parser and the code generator. An interface declares
// ECALLs (`trusted`) and OCALLs (`untrusted`) once; `teemate edger`
// generates the enclave-side and host-side stubs from it. Host-only build
// tool: nothing here runs inside an enclave, and nothing here decides at run
// time (the generated code does, with teemate/call_wire.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "teemate/status.h"

namespace teemate::edl {

// A scalar C type the wire carries as one 8-byte word.
struct ScalarType {
  std::string spelling;  // as written in C: "uint32_t", "unsigned long long"
  uint32_t size = 0;     // sizeof
  bool is_integer = true;
};

enum class Direction { kNone, kIn, kOut, kInOut };

struct Param {
  std::string name;
  ScalarType type;       // the pointee's type for pointers ("void": size 1)
  bool pointer = false;
  bool is_const = false;
  Direction dir = Direction::kNone;
  bool string = false;      // [in, string] const char*
  bool user_check = false;  // passed as an address, never copied or checked
  // [size=...] (bytes) or [count=...] (elements): a constant or the name
  // of an integer scalar parameter of the same function. Neither: one element.
  bool has_size = false;
  bool size_is_count = false;
  std::string size_param;   // empty: size_const
  uint64_t size_const = 0;
  int line = 0;
};

struct Function {
  std::string name;
  bool has_return = false;  // false: void
  ScalarType ret;
  std::vector<Param> params;
  bool trusted = true;      // ECALL (trusted) or OCALL (untrusted)
  // `transition_using_threads` after the parameter list: the stubs call
  // through a switchless worker when one is free (not part of the hash:
  // the frames are the same).
  bool switchless = false;
  uint32_t id = 0;          // call id, assigned in declaration order
  uint64_t hash = 0;        // FNV-1a of the canonical signature
  int line = 0;
};

struct Interface {
  std::string name;  // file stem: names the generated files and the registration function
  std::vector<Function> ecalls;
  std::vector<Function> ocalls;
};

// Typed calls use ids from kFirstTypedId up (hand-written TM_ECALL ids stay
// below): interface NAME gets the block of kIdsPerInterface ids at
// kFirstTypedId + interface_block(NAME) * kIdsPerInterface, its ECALLs and
// OCALLs numbered in declaration order within it.
inline constexpr uint32_t kFirstTypedId = 0x10000;
inline constexpr uint32_t kIdsPerInterface = 0x1000;
inline constexpr uint32_t kInterfaceBlocks = 0xffef;
inline constexpr size_t kMaxParams = 32;
// The runtime's interfaces (tm_posix, tm_control) split block 0 into parts
// of kIdsPerRuntimeInterface ids each, in a fixed order.
inline constexpr uint32_t kIdsPerRuntimeInterface = 0x100;
// The id block of an interface: 0 for the runtime's (tm_*), else 1 +
// FNV-1a(name) mod (kInterfaceBlocks - 1).
uint32_t interface_block(const std::string& name);
// The first call id of interface NAME (its functions follow in declaration
// order); an unknown tm_* name is an error.
Result<uint32_t> interface_first_id(const std::string& name);

// Parses an interface; errors name "file:line: " and what is wrong.
// `runtime`: the runtime's own interfaces (names tm_*), whose functions may
// use the tm_ prefix and whose ids are the reserved block 0.
// `linked_symbols` (sorted): names the libraries every enclave links define;
// a function with one of these names is refused, since the generated
// definition would replace the library's at link time.
Result<Interface> parse(std::string_view text, const std::string& file, const std::string& name,
                        bool runtime = false, std::span<const std::string_view> linked_symbols = {});

// Reads `edl_path`, generates and writes NAME_t.h/.cpp into `trusted_dir`
// and NAME_u.h/.cpp into `untrusted_dir` (either may be empty: skipped).
// NAME is the file's stem and must be a C identifier.
Status generate_files(const std::string& edl_path, const std::string& trusted_dir, const std::string& untrusted_dir,
                      bool runtime = false, std::span<const std::string_view> linked_symbols = {});

// Generated sources, by file name (NAME_t.h, NAME_t.cpp, NAME_u.h, NAME_u.cpp).
struct Generated {
  std::string trusted_header, trusted_source, untrusted_header, untrusted_source;
};
Generated generate(const Interface& iface);

// The canonical text a function's hash is computed from (for tests and docs).
std::string canonical_signature(const Function& f);

}  // namespace teemate::edl
