// Sim EREPORT/EGETKEY and the root key file. See sim_keys.h.
#include "host/backend/sim/sim_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "base/paths.h"

namespace teemate::host::sim {
namespace {

uint8_t g_root_key[32];
bool g_root_loaded = false;

// HMAC-SHA256(root, label || fields) truncated to 128 bits.
void derive(const uint8_t root[32], const uint8_t* fields, size_t n, uint8_t out[16]) {
  static const char kLabel[] = "TEEMATE-SIM-EGETKEY-v1";
  uint8_t buf[512];
  size_t len = sizeof(kLabel) - 1;
  memcpy(buf, kLabel, len);
  memcpy(buf + len, fields, n);
  len += n;
  uint8_t mac[32];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), root, 32, buf, len, mac, &mac_len);
  memcpy(out, mac, 16);
  OPENSSL_cleanse(mac, sizeof mac);
}

struct DerivationInput {
  uint16_t key_name;
  uint16_t isv_prod_id;
  uint16_t isv_svn;
  uint16_t config_svn;
  uint8_t cpu_svn[16];
  sgx::Attributes attributes;
  uint32_t misc_select;
  uint32_t pad;
  uint8_t mr_enclave[32];
  uint8_t mr_signer[32];
  uint8_t key_id[32];
};

void report_key(const uint8_t root[32], const uint8_t mr_enclave[32], const sgx::Attributes& attr, uint32_t misc,
                const uint8_t key_id[32], uint8_t out[16]) {
  DerivationInput in{};
  in.key_name = sgx::kKeyReport;
  memcpy(in.cpu_svn, kSimCpuSvn, 16);
  in.attributes = attr;
  in.misc_select = misc;
  memcpy(in.mr_enclave, mr_enclave, 32);
  memcpy(in.key_id, key_id, 32);
  derive(root, reinterpret_cast<const uint8_t*>(&in), sizeof in, out);
}

void cmac(const uint8_t key[16], const uint8_t* data, size_t n, uint8_t out[16]) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "CMAC", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  char cipher[] = "AES-128-CBC";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0),
                         OSSL_PARAM_construct_end()};
  size_t out_len = 0;
  EVP_MAC_init(ctx, key, 16, params);
  EVP_MAC_update(ctx, data, n);
  EVP_MAC_final(ctx, out, &out_len, 16);
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
}

}  // namespace

const uint8_t kSimCpuSvn[16] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};


void copy_root_key(uint8_t out[32]) { memcpy(out, g_root_key, sizeof g_root_key); }

std::string root_key_path() {
  if (const char* p = std::getenv("TEEMATE_SIM_ROOT_KEY"); p && *p) return p;
  return base::state_dir() + "/sim-root.key";
}

Status load_root_key() {
  if (g_root_loaded) return {};
  const std::string path = root_key_path();
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT) {
    uint8_t key[32];
    if (RAND_bytes(key, sizeof key) != 1) return internal_error("cannot generate the sim root key");
    std::string tmp = path + ".tmp." + std::to_string(getpid());
    int w = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w < 0) return io_error("cannot create sim root key " + tmp, errno);
    bool ok = write(w, key, sizeof key) == static_cast<ssize_t>(sizeof key) && fsync(w) == 0;
    close(w);
    OPENSSL_cleanse(key, sizeof key);
    // link() fails if another process created the key first: use theirs.
    if (!ok || (link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST)) {
      int err = errno;
      unlink(tmp.c_str());
      return io_error("cannot install sim root key " + path, err);
    }
    unlink(tmp.c_str());
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  }
  if (fd < 0) return io_error("cannot open sim root key " + path, errno);
  struct stat sb {};
  fstat(fd, &sb);
  if ((sb.st_mode & 0077) != 0 || sb.st_uid != geteuid()) {
    close(fd);
    return security_error("sim root key " + path + " must be owned by this user with mode 0600");
  }
  ssize_t n = read(fd, g_root_key, sizeof g_root_key);
  close(fd);
  if (n != static_cast<ssize_t>(sizeof g_root_key) || sb.st_size != static_cast<off_t>(sizeof g_root_key)) {
    return corrupt("sim root key " + path + " must hold exactly 32 bytes");
  }
  g_root_loaded = true;
  return {};
}

void ereport(const SimEnclaveState& st, const sgx::TargetInfo& target, const uint8_t* report_data,
             sgx::Report* out) {
  sgx::Report r{};
  memcpy(r.cpu_svn, kSimCpuSvn, 16);
  r.misc_select = st.misc_select;
  r.attributes = st.attributes;
  r.attributes.flags |= sgx::kAttrInit;
  memcpy(r.mr_enclave, st.mr_enclave, 32);
  memcpy(r.mr_signer, st.mr_signer, 32);
  r.isv_prod_id = st.isv_prod_id;
  r.isv_svn = st.isv_svn;
  memcpy(r.report_data, report_data, 64);
  RAND_bytes(r.key_id, sizeof r.key_id);
  uint8_t key[16];
  report_key(st.root_key, target.mr_enclave, target.attributes, target.misc_select, r.key_id, key);
  cmac(key, reinterpret_cast<const uint8_t*>(&r), sgx::kReportBodySize, r.mac);
  OPENSSL_cleanse(key, sizeof key);
  memcpy(out, &r, sizeof r);
}

uint32_t egetkey(const SimEnclaveState& st, const sgx::KeyRequest& req, uint8_t* key_out) {
  if (req.key_name != sgx::kKeySeal && req.key_name != sgx::kKeyReport) return kErrInvalidKeyname;
  sgx::Attributes attr = st.attributes;
  attr.flags |= sgx::kAttrInit;
  if (req.key_name == sgx::kKeyReport) {
    uint8_t key[16];
    report_key(st.root_key, st.mr_enclave, attr, st.misc_select, req.key_id, key);
    memcpy(key_out, key, 16);
    OPENSSL_cleanse(key, sizeof key);
    return 0;
  }
  if (req.isv_svn > st.isv_svn) return kErrInvalidIsvSvn;
  if (memcmp(req.cpu_svn, kSimCpuSvn, 16) > 0) return kErrInvalidCpuSvn;
  DerivationInput in{};
  in.key_name = sgx::kKeySeal;
  in.isv_prod_id = st.isv_prod_id;
  in.isv_svn = req.isv_svn;
  memcpy(in.cpu_svn, req.cpu_svn, 16);
  // INIT and DEBUG always take part, so a debug enclave never derives a
  // production enclave's sealing key.
  in.attributes.flags = attr.flags & (req.attribute_mask.flags | sgx::kAttrInit | sgx::kAttrDebug);
  in.attributes.xfrm = attr.xfrm & req.attribute_mask.xfrm;
  in.misc_select = st.misc_select & req.misc_mask;
  if (req.key_policy & sgx::kKeyPolicyMrEnclave) memcpy(in.mr_enclave, st.mr_enclave, 32);
  if (req.key_policy & sgx::kKeyPolicyMrSigner) memcpy(in.mr_signer, st.mr_signer, 32);
  memcpy(in.key_id, req.key_id, 32);
  uint8_t key[16];
  derive(st.root_key, reinterpret_cast<const uint8_t*>(&in), sizeof in, key);
  memcpy(key_out, key, 16);
  OPENSSL_cleanse(key, sizeof key);
  return 0;
}

}  // namespace teemate::host::sim
