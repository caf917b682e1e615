// Typed decoding of teemated requests (see requests.h). Every field goes
// through the non-throwing accessors of protocol.h.
#include "host/daemon/requests.h"

#include "host/daemon/protocol.h"

namespace teemate::protocol {
namespace {

using nlohmann::json;

Result<EnclaveSelector> selector(const json& body, bool required, const std::string& op) {
  EnclaveSelector s;
  if (body.contains("enclave")) {
    TM_ASSIGN_OR_RETURN(uint64_t id, get_u64(body, "enclave", UINT32_MAX));
    if (id == 0) return invalid_argument(op + ": field 'enclave' must be an enclave id (1 or more)");
    s.id = static_cast<uint32_t>(id);
  }
  if (body.contains("mrenclave")) {
    TM_ASSIGN_OR_RETURN(std::vector<uint8_t> mr, get_hex(body, "mrenclave", 32));
    std::array<uint8_t, 32> a{};
    std::copy(mr.begin(), mr.end(), a.begin());
    s.mrenclave = a;
  }
  if (body.contains("loaded")) {
    TM_ASSIGN_OR_RETURN(bool loaded, get_bool(body, "loaded"));
    if (!loaded) return invalid_argument(op + ": field 'loaded' can only be true");
    s.loaded = true;
  }
  if ((s.id ? 1 : 0) + (s.mrenclave ? 1 : 0) + (s.loaded ? 1 : 0) > 1) {
    return invalid_argument(op + ": give one of 'enclave', 'mrenclave' and 'loaded'");
  }
  if (required && s.empty()) return invalid_argument(op + ": field 'enclave', 'mrenclave' or 'loaded' is missing");
  return s;
}

Result<uint32_t> tcs_count(const json& body, uint32_t fallback) {
  if (!body.contains("tcs")) return fallback;
  TM_ASSIGN_OR_RETURN(uint64_t n, get_u64(body, "tcs", kMaxTcsPerRequest));
  return static_cast<uint32_t>(n);
}

template <typename T>
Result<Request> wrap(Result<T> r, const std::string& op) {
  if (!r.ok()) return r.status().code() == Code::kInvalidArgument && r.status().message().rfind(op, 0) != 0
                          ? Status(Code::kInvalidArgument, op + ": " + r.status().message())
                          : r.status();
  return Request(std::move(r).value());
}

Result<HelloRequest> hello(const json& b) {
  HelloRequest r;
  if (b.contains("client")) {
    TM_ASSIGN_OR_RETURN(r.client, get_string(b, "client"));
    if (r.client.size() > kMaxClientName) {
      return invalid_argument("field 'client' must be at most " + std::to_string(kMaxClientName) + " bytes");
    }
  }
  return r;
}

Result<LoadRequest> load(const json& b) {
  LoadRequest r;
  TM_ASSIGN_OR_RETURN(r.image, get_string(b, "image"));
  if (r.image.empty() || r.image[0] != '/') return invalid_argument("field 'image' must be an absolute path");
  if (r.image.size() > kMaxPath) return invalid_argument("field 'image' is longer than " + std::to_string(kMaxPath) + " bytes");
  if (b.contains("new")) {
    TM_ASSIGN_OR_RETURN(r.fresh, get_bool(b, "new"));
  }
  if (b.contains("trust_domain")) {
    TM_ASSIGN_OR_RETURN(r.trust_domain, get_string(b, "trust_domain"));
    if (r.trust_domain.empty() || r.trust_domain.size() > 64) {
      return invalid_argument("field 'trust_domain' must be 1 to 64 bytes");
    }
  }
  return r;
}

Result<AttachRequest> attach(const json& b) {
  AttachRequest r;
  TM_ASSIGN_OR_RETURN(r.which, selector(b, true, "attach"));
  TM_ASSIGN_OR_RETURN(r.tcs, tcs_count(b, 1));
  return r;
}

Result<LeaseRequest> lease(const json& b) {
  LeaseRequest r;
  TM_ASSIGN_OR_RETURN(r.which, selector(b, false, "lease"));
  TM_ASSIGN_OR_RETURN(r.tcs, tcs_count(b, 1));
  return r;
}

Result<ReleaseRequest> release(const json& b) {
  ReleaseRequest r;
  TM_ASSIGN_OR_RETURN(r.which, selector(b, false, "release"));
  TM_ASSIGN_OR_RETURN(std::vector<uint64_t> idx, get_u64_array(b, "tcs", UINT32_MAX, kMaxTcsPerRequest));
  r.tcs.assign(idx.begin(), idx.end());
  return r;
}

Result<DetachRequest> detach(const json& b) {
  DetachRequest r;
  TM_ASSIGN_OR_RETURN(r.which, selector(b, false, "detach"));
  return r;
}

}  // namespace

std::string request_op(const json& body) {
  if (!body.is_object()) return "";
  auto it = body.find("op");
  return it != body.end() && it->is_string() ? it->get<std::string>() : "";
}

Result<Request> decode_request(const json& body) {
  if (!body.is_object()) return invalid_argument("a request must be a JSON object");
  const std::string op = request_op(body);
  if (op == "hello") return wrap(hello(body), op);
  if (op == "load") return wrap(load(body), op);
  if (op == "list") return Request(ListRequest{});
  if (op == "attach") return wrap(attach(body), op);
  if (op == "lease") return wrap(lease(body), op);
  if (op == "release") return wrap(release(body), op);
  if (op == "detach") return wrap(detach(body), op);
  return Status(Code::kUnsupported, "unknown op '" + op.substr(0, 64) + "'");
}

}  // namespace teemate::protocol
