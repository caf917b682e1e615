// The teemated requests as typed values: each operation's fields decoded
// from a request body and checked (type, range, length) before the daemon
// sees them. decode_request never throws and never reads a field twice; an
// error names the operation and the field (docs/daemon-protocol.md lists
// them). Fields a request does not know are ignored, as the protocol says.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "teemate/status.h"

namespace teemate::protocol {

inline constexpr size_t kMaxClientName = 64;     // "client" of hello (longer is refused)
inline constexpr size_t kMaxPath = 4096;         // "image" of load
inline constexpr uint64_t kMaxTcsPerRequest = 1024;

// Which warm enclave a request names: by id, by MRENCLAVE, or (neither)
// the connection's own attachment where the operation allows it.
struct EnclaveSelector {
  std::optional<uint32_t> id;
  std::optional<std::array<uint8_t, 32>> mrenclave;
  // "loaded": true: the enclave this connection's last successful load
  // answered with (so that hello, load and attach travel together).
  bool loaded = false;
  bool empty() const { return !id && !mrenclave && !loaded; }
};

struct HelloRequest {
  std::string client;  // may be empty
};
struct LoadRequest {
  std::string image;         // absolute path, for people; the file itself comes as a descriptor
  bool fresh = false;        // "new": build another instance even if one is warm
  std::string trust_domain;  // empty: the caller's own ("uid:N")
};
struct ListRequest {};
struct AttachRequest {
  EnclaveSelector which;  // required
  uint32_t tcs = 1;
};
struct LeaseRequest {
  EnclaveSelector which;
  uint32_t tcs = 1;
};
struct ReleaseRequest {
  EnclaveSelector which;
  std::vector<uint32_t> tcs;
};
struct DetachRequest {
  EnclaveSelector which;
};

using Request = std::variant<HelloRequest, LoadRequest, ListRequest, AttachRequest, LeaseRequest, ReleaseRequest,
                             DetachRequest>;

// The operation name of a request body ("" when it has none that is a string).
std::string request_op(const nlohmann::json& body);
// Decodes a request body that recv_message accepted. kInvalidArgument for a
// field that is missing, of the wrong type or out of range (the message
// names it); kUnsupported for an unknown operation.
Result<Request> decode_request(const nlohmann::json& body);

}  // namespace teemate::protocol
