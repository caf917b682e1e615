// teemated's configuration file (TOML, --config): trust domains (who may
// share enclaves with whom) and resource limits. Also who a connected client
// is (uid, gid, supplementary groups) and whether it belongs to a domain.
// Never trusts the file: every key is checked and named in errors.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "teemate/status.h"

namespace teemate::daemon {

// Processes that may share enclaves: the users and groups listed. Every
// user also has its own implicit domain "uid:N" (the default of a load),
// which only that user (and root) belongs to.
struct TrustDomain {
  std::string name;
  std::vector<uid_t> uids;
  std::vector<gid_t> gids;
};

struct DaemonLimits {
  uint32_t max_enclaves = 32;             // warm enclaves in all
  uint32_t max_enclaves_per_uid = 8;      // warm enclaves one user loaded
  uint32_t max_instances_per_image = 4;   // of one MRENCLAVE in one domain ("new": true)
  uint32_t max_builds_per_uid = 2;        // enclave builds of one user at once
  uint32_t max_connections_per_uid = 128; // open connections of one user
};

struct DaemonConfig {
  std::vector<TrustDomain> domains;
  DaemonLimits limits;
};

// The file's contents, e.g.
//   [limits]
//   max_enclaves = 32
//   max_enclaves_per_uid = 8
//   [trust_domains.functions]
//   uids = [1000, 1001]
//   gids = [2000]
Result<DaemonConfig> parse_daemon_config(const std::string& text, const std::string& source_name);
Result<DaemonConfig> load_daemon_config(const std::string& path);

// The peer of a connection as the kernel vouches for it (SO_PEERCRED,
// SO_PEERGROUPS).
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};
Result<Caller> caller_of(int sock);

// "uid:1000".
std::string own_domain(uid_t uid);
// May `who` use enclaves of `domain`? Root may use every domain.
bool is_member(const DaemonConfig& config, const std::string& domain, const Caller& who);
// Is `name` a domain a load may name (its own "uid:N", or a configured one)?
bool domain_exists(const DaemonConfig& config, const std::string& name, const Caller& who);

}  // namespace teemate::daemon
