// teemated's configuration and caller identity (see daemon_config.h).
#include "host/daemon/daemon_config.h"

#include <errno.h>
#include <sys/socket.h>

#include <algorithm>

#include <toml++/toml.h>

#include "host/image/file_util.h"

namespace teemate::daemon {
namespace {

bool valid_domain_name(const std::string& n) {
  if (n.empty() || n.size() > 64 || n.rfind("uid:", 0) == 0) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

template <typename T>
Status id_list(const toml::node& node, const std::string& key, std::vector<T>* out) {
  const toml::array* arr = node.as_array();
  if (!arr) return invalid_argument(key + " must be an array of integers");
  for (const auto& v : *arr) {
    const auto* i = v.as_integer();
    if (!i || i->get() < 0 || i->get() > 0xfffffffe) {
      return invalid_argument(key + " must hold integers from 0 to 4294967294");
    }
    out->push_back(static_cast<T>(i->get()));
  }
  return {};
}

Status limit(const toml::node& node, const std::string& key, uint32_t lo, uint32_t hi, uint32_t* out) {
  const auto* i = node.as_integer();
  if (!i || i->get() < lo || i->get() > hi) {
    return invalid_argument(key + " must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  }
  *out = static_cast<uint32_t>(i->get());
  return {};
}

}  // namespace

Result<DaemonConfig> parse_daemon_config(const std::string& text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return invalid_argument(source + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) + ": " +
                            std::string(e.description()));
  } catch (const std::exception& e) {
    return invalid_argument(source + ": " + e.what());
  }
  DaemonConfig c;
  for (auto&& [k, node] : root) {
    const std::string key(k.str());
    if (key == "limits") {
      const toml::table* t = node.as_table();
      if (!t) return invalid_argument(source + ": 'limits' must be a table");
      for (auto&& [lk, lnode] : *t) {
        const std::string name = "limits." + std::string(lk.str());
        Status st;
        if (lk.str() == "max_enclaves") st = limit(lnode, name, 1, 64, &c.limits.max_enclaves);
        else if (lk.str() == "max_enclaves_per_uid") st = limit(lnode, name, 1, 64, &c.limits.max_enclaves_per_uid);
        else if (lk.str() == "max_instances_per_image") st = limit(lnode, name, 1, 64, &c.limits.max_instances_per_image);
        else if (lk.str() == "max_builds_per_uid") st = limit(lnode, name, 1, 64, &c.limits.max_builds_per_uid);
        else if (lk.str() == "max_connections_per_uid") st = limit(lnode, name, 1, 4096, &c.limits.max_connections_per_uid);
        else st = invalid_argument("unknown key " + name);
        if (!st.ok()) return st.with_context(source);
      }
    } else if (key == "trust_domains") {
      const toml::table* t = node.as_table();
      if (!t) return invalid_argument(source + ": 'trust_domains' must be a table of tables");
      for (auto&& [dk, dnode] : *t) {
        TrustDomain d;
        d.name = std::string(dk.str());
        const std::string prefix = "trust_domains." + d.name;
        if (!valid_domain_name(d.name)) {
          return invalid_argument(source + ": " + prefix +
                                  ": a domain name is 1 to 64 of a-z 0-9 . _ - (and never starts with uid:)");
        }
        const toml::table* dt = dnode.as_table();
        if (!dt) return invalid_argument(source + ": " + prefix + " must be a table");
        for (auto&& [fk, fnode] : *dt) {
          Status st;
          if (fk.str() == "uids") st = id_list(fnode, prefix + ".uids", &d.uids);
          else if (fk.str() == "gids") st = id_list(fnode, prefix + ".gids", &d.gids);
          else st = invalid_argument("unknown key " + prefix + "." + std::string(fk.str()));
          if (!st.ok()) return st.with_context(source);
        }
        c.domains.push_back(std::move(d));
      }
    } else {
      return invalid_argument(source + ": unknown key '" + key + "' (known: limits, trust_domains)");
    }
  }
  return c;
}

Result<DaemonConfig> load_daemon_config(const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::string text, image::read_text_file(path, 1u << 20));
  return parse_daemon_config(text, path);
}

Result<Caller> caller_of(int sock) {
  Caller c;
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return io_error("SO_PEERCRED", errno);
  c.uid = cred.uid;
  c.gid = cred.gid;
  std::vector<gid_t> groups(64);
  len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  if (getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0 && errno == ERANGE) {
    groups.resize(len / sizeof(gid_t) + 1);
    len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) len = 0;
  }
  groups.resize(len / sizeof(gid_t));
  c.groups = std::move(groups);
  return c;
}

std::string own_domain(uid_t uid) { return "uid:" + std::to_string(uid); }

bool is_member(const DaemonConfig& config, const std::string& domain, const Caller& who) {
  if (who.uid == 0) return true;
  if (domain == own_domain(who.uid)) return true;
  for (const TrustDomain& d : config.domains) {
    if (d.name != domain) continue;
    if (std::find(d.uids.begin(), d.uids.end(), who.uid) != d.uids.end()) return true;
    for (gid_t g : d.gids) {
      if (g == who.gid || std::find(who.groups.begin(), who.groups.end(), g) != who.groups.end()) return true;
    }
  }
  return false;
}

bool domain_exists(const DaemonConfig& config, const std::string& name, const Caller& who) {
  if (name.rfind("uid:", 0) == 0) return name == own_domain(who.uid) || who.uid == 0;
  return std::any_of(config.domains.begin(), config.domains.end(), [&](const TrustDomain& d) { return d.name == name; });
}

}  // namespace teemate::daemon
