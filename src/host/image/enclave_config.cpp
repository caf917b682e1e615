// enclave.toml parsing (toml++), range checks and the fixed binary record a
// .tme image carries. Never lets a toml++ exception escape, never accepts an
// unknown key or an out-of-range value: every error names the key and limit.
#include "host/image/le_bytes.h"
#include "host/image/enclave_config.h"

#include <toml++/toml.h>

#include <cstdio>
#include <cstring>
#include <limits>

namespace teemate::image {

namespace {

using le::get16;
using le::get32;
using le::get64;
using le::put16;
using le::put32;
using le::put64;


constexpr uint64_t kPage = 4096;
constexpr uint64_t kKiB = 1ull << 10, kMiB = 1ull << 20, kGiB = 1ull << 30;
constexpr uint64_t kU16 = 0xffff, kU32 = 0xffffffff, kU64 = std::numeric_limits<uint64_t>::max();

// ATTRIBUTES.FLAGS bits a config may ask for: MODE64BIT (always set anyway),
// PROVISIONKEY, EINITTOKEN_KEY, CET, KSS, AEXNOTIFY. INIT is set by EINIT and
// DEBUG comes from `debug = true`; the rest are reserved.
constexpr uint64_t kAllowedAttributes = (1ull << 2) | (1ull << 4) | (1ull << 5) | (1ull << 6) |
                                        (1ull << 7) | (1ull << 10);
// XFRM bits SGX knows: x87, SSE, AVX, MPX (2 bits), AVX-512 (3 bits), PKRU,
// AMX (2 bits).
constexpr uint64_t kKnownXfrm = 0x3ull | (1ull << 2) | (3ull << 3) | (7ull << 5) | (1ull << 9) |
                                (3ull << 17);

enum class Style { kDecimal, kSize, kHex };

struct Field {
  const char* key;
  uint64_t min;
  uint64_t max;
  Style style;
  bool page_multiple;
  uint64_t (*get)(const EnclaveConfig&);
  void (*set)(EnclaveConfig&, uint64_t);
};

// clang-format off
const Field kFields[] = {
  {"heap_size", 4 * kKiB, 64 * kGiB, Style::kSize, true,
   [](const EnclaveConfig& c) -> uint64_t { return c.heap_size; },
   [](EnclaveConfig& c, uint64_t v) { c.heap_size = v; }},
  {"stack_size", 8 * kKiB, 64 * kMiB, Style::kSize, true,
   [](const EnclaveConfig& c) -> uint64_t { return c.stack_size; },
   [](EnclaveConfig& c, uint64_t v) { c.stack_size = v; }},
  {"tcs_count", 1, 1024, Style::kDecimal, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.tcs_count; },
   [](EnclaveConfig& c, uint64_t v) { c.tcs_count = static_cast<uint32_t>(v); }},
  {"ssa_frames", 2, 16, Style::kDecimal, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.ssa_frames; },
   [](EnclaveConfig& c, uint64_t v) { c.ssa_frames = static_cast<uint32_t>(v); }},
  {"ssa_frame_pages", 1, 16, Style::kDecimal, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.ssa_frame_pages; },
   [](EnclaveConfig& c, uint64_t v) { c.ssa_frame_pages = static_cast<uint32_t>(v); }},
  {"isv_prod_id", 0, kU16, Style::kDecimal, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.isv_prod_id; },
   [](EnclaveConfig& c, uint64_t v) { c.isv_prod_id = static_cast<uint16_t>(v); }},
  {"isv_svn", 0, kU16, Style::kDecimal, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.isv_svn; },
   [](EnclaveConfig& c, uint64_t v) { c.isv_svn = static_cast<uint16_t>(v); }},
  {"misc_select", 0, kU32, Style::kHex, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.misc_select; },
   [](EnclaveConfig& c, uint64_t v) { c.misc_select = static_cast<uint32_t>(v); }},
  {"misc_mask", 0, kU32, Style::kHex, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.misc_mask; },
   [](EnclaveConfig& c, uint64_t v) { c.misc_mask = static_cast<uint32_t>(v); }},
  {"attributes", 0, kU64, Style::kHex, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.attributes; },
   [](EnclaveConfig& c, uint64_t v) { c.attributes = v; }},
  {"attributes_mask", 0, kU64, Style::kHex, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.attributes_mask; },
   [](EnclaveConfig& c, uint64_t v) { c.attributes_mask = v; }},
  {"xfrm", 0, kU64, Style::kHex, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.xfrm; },
   [](EnclaveConfig& c, uint64_t v) { c.xfrm = v; }},
  {"xfrm_mask", 0, kU64, Style::kHex, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.xfrm_mask; },
   [](EnclaveConfig& c, uint64_t v) { c.xfrm_mask = v; }},
  {"max_call_buffer", 4 * kKiB, 1 * kGiB, Style::kSize, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.max_call_buffer; },
   [](EnclaveConfig& c, uint64_t v) { c.max_call_buffer = v; }},
  {"switchless_ocall_workers", 0, 64, Style::kDecimal, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.switchless_ocall_workers; },
   [](EnclaveConfig& c, uint64_t v) { c.switchless_ocall_workers = static_cast<uint32_t>(v); }},
  {"switchless_ecall_workers", 0, 64, Style::kDecimal, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.switchless_ecall_workers; },
   [](EnclaveConfig& c, uint64_t v) { c.switchless_ecall_workers = static_cast<uint32_t>(v); }},
  {"switchless_retries", 0, 10000000, Style::kDecimal, false,
   [](const EnclaveConfig& c) -> uint64_t { return c.switchless_retries; },
   [](EnclaveConfig& c, uint64_t v) { c.switchless_retries = static_cast<uint32_t>(v); }},
};
// clang-format on

std::string format_value(uint64_t v, Style style) {
  char buf[40];
  if (style == Style::kHex) {
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
  }
  if (style == Style::kSize && v != 0) {
    static const struct { uint64_t unit; char suffix; } kUnits[] = {
        {kGiB, 'G'}, {kMiB, 'M'}, {kKiB, 'K'}};
    for (const auto& u : kUnits) {
      if (v % u.unit == 0) {
        std::snprintf(buf, sizeof buf, "%llu%c", static_cast<unsigned long long>(v / u.unit), u.suffix);
        return buf;
      }
    }
  }
  return std::to_string(v);
}

Status out_of_range(const Field& f, const std::string& shown) {
  return invalid_argument(std::string("enclave.") + f.key + " = " + shown + " is out of range [" +
                          format_value(f.min, f.style) + ", " + format_value(f.max, f.style) + "]");
}

Status check_field(const Field& f, uint64_t v) {
  if (v < f.min || v > f.max) return out_of_range(f, format_value(v, f.style));
  if (f.page_multiple && v % kPage != 0) {
    return invalid_argument(std::string("enclave.") + f.key + " = " + format_value(v, f.style) +
                            " is not a multiple of the page size (4096)");
  }
  return Status::ok_status();
}

// Parses "123", "0x7b", "1_000", and, when `sizes`, a K/M/G suffix
// ("64M", "64MiB", "64mb"). Returns false on anything else or on overflow.
bool parse_number_string(std::string_view s, bool sizes, uint64_t* out) {
  uint64_t base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  uint64_t v = 0;
  size_t i = 0, digits = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    uint64_t d;
    if (c >= '0' && c <= '9') d = static_cast<uint64_t>(c - '0');
    else if (base == 16 && c >= 'a' && c <= 'f') d = static_cast<uint64_t>(c - 'a' + 10);
    else if (base == 16 && c >= 'A' && c <= 'F') d = static_cast<uint64_t>(c - 'A' + 10);
    else if (c == '_' && digits > 0 && i + 1 < s.size()) continue;
    else break;
    if (v > (kU64 - d) / base) return false;
    v = v * base + d;
    ++digits;
  }
  if (digits == 0) return false;
  std::string_view rest = s.substr(i);
  if (!rest.empty()) {
    if (!sizes || base != 10) return false;
    uint64_t mult;
    switch (rest[0]) {
      case 'k': case 'K': mult = kKiB; break;
      case 'm': case 'M': mult = kMiB; break;
      case 'g': case 'G': mult = kGiB; break;
      default: return false;
    }
    rest.remove_prefix(1);
    if (!(rest.empty() || rest == "B" || rest == "b" || rest == "iB" || rest == "ib")) return false;
    if (v > kU64 / mult) return false;
    v *= mult;
  }
  *out = v;
  return true;
}

Status parse_field(const Field& f, const toml::node& node, EnclaveConfig* config) {
  const std::string key = std::string("enclave.") + f.key;
  uint64_t v = 0;
  if (const auto* i = node.as_integer()) {
    const int64_t raw = i->get();
    if (raw < 0) return out_of_range(f, std::to_string(raw));
    v = static_cast<uint64_t>(raw);
  } else if (const auto* s = node.as_string()) {
    if (!parse_number_string(s->get(), f.style == Style::kSize, &v)) {
      return invalid_argument(key + " = \"" + s->get() + "\" is not a number" +
                              (f.style == Style::kSize
                                   ? " (use bytes, or a number with suffix K, M or G such as \"64M\")"
                                   : " (use an integer, or a string such as \"0x1f\")"));
    }
  } else {
    return invalid_argument(key + " must be an integer" +
                            std::string(f.style == Style::kSize ? " or a size string such as \"64M\""
                                                                : " or a numeric string such as \"0x1f\""));
  }
  TM_RETURN_IF_ERROR(check_field(f, v));
  f.set(*config, v);
  return Status::ok_status();
}

Status parse_enclave_table(const toml::table& table, EnclaveConfig* config) {
  for (auto&& [k, node] : table) {
    const std::string_view key = k.str();
    if (key == "debug") {
      const auto* b = node.as_boolean();
      if (b == nullptr) return invalid_argument("enclave.debug must be true or false");
      config->debug = b->get();
      continue;
    }
    const Field* field = nullptr;
    for (const Field& f : kFields) {
      if (key == f.key) field = &f;
    }
    if (field == nullptr) {
      return invalid_argument("unknown key '" + std::string(key) + "' in [enclave]");
    }
    TM_RETURN_IF_ERROR(parse_field(*field, node, config));
  }
  return Status::ok_status();
}

// [[mount]] tables: path, host, type; nothing else.
Status parse_mounts(const toml::node& node, MountManifest* manifest) {
  const toml::array* arr = node.as_array();
  if (arr == nullptr) return invalid_argument("'mount' must be an array of tables ([[mount]])");
  for (size_t i = 0; i < arr->size(); ++i) {
    const std::string at = "mount[" + std::to_string(i) + "]";
    const toml::table* t = (*arr)[i].as_table();
    if (t == nullptr) return invalid_argument(at + " must be a table ([[mount]])");
    MountSpec spec;
    bool have_path = false, have_host = false, have_type = false;
    for (auto&& [k, v] : *t) {
      const std::string_view key = k.str();
      const auto* str = v.as_string();
      if (key != "path" && key != "host" && key != "type") {
        return invalid_argument("unknown key '" + std::string(key) + "' in " + at +
                                " (allowed: path, host, type)");
      }
      if (str == nullptr) return invalid_argument(at + "." + std::string(key) + " must be a string");
      if (key == "path") {
        spec.path = str->get();
        have_path = true;
      } else if (key == "host") {
        spec.host = str->get();
        have_host = true;
      } else {
        const std::string& ty = str->get();
        if (ty == "trusted") spec.type = abi::kMountTrusted;
        else if (ty == "protected") spec.type = abi::kMountProtected;
        else if (ty == "untrusted") spec.type = abi::kMountUntrusted;
        else return invalid_argument(at + ".type = \"" + ty + "\" is not trusted, protected or untrusted");
        have_type = true;
      }
    }
    if (!have_path) return invalid_argument(at + " has no path (the directory inside the enclave, e.g. \"/data\")");
    if (!have_host) return invalid_argument(at + " has no host (the directory on the host)");
    if (!have_type) return invalid_argument(at + " has no type (trusted, protected or untrusted)");
    manifest->mounts.push_back(std::move(spec));
  }
  return normalize_and_check(manifest);
}

// ---- binary record --------------------------------------------------------

constexpr uint8_t kRecordMagic[8] = {'T', 'M', 'C', 'O', 'N', 'F', 'I', 'G'};
constexpr uint32_t kRecordVersion = 1;
constexpr size_t kRecordSize = 128;


// Record layout (all little-endian):
//   0 magic "TMCONFIG"   8 u32 version   12 u32 record size (128)
//  16 heap_size u64     24 stack_size u64
//  32 tcs_count u32     36 ssa_frames u32   40 ssa_frame_pages u32   44 debug u32 (0/1)
//  48 isv_prod_id u16   50 isv_svn u16      52 misc_select u32       56 misc_mask u32
//  60 reserved u32 (0)
//  64 attributes u64    72 attributes_mask u64   80 xfrm u64   88 xfrm_mask u64
//  96 max_call_buffer u64
// 104 switchless_ocall_workers u16   106 switchless_ecall_workers u16
// 108 switchless_retries u32   112..128 reserved (0)

}  // namespace

Status validate_config(const EnclaveConfig& c) {
  for (const Field& f : kFields) TM_RETURN_IF_ERROR(check_field(f, f.get(c)));
  MountManifest sorted = c.manifest;
  TM_RETURN_IF_ERROR(normalize_and_check(&sorted));
  if (!(sorted == c.manifest)) return invalid_argument("the mount manifest is not sorted");
  if (c.switchless_ecall_workers && c.switchless_ecall_workers >= c.tcs_count) {
    return invalid_argument("enclave.switchless_ecall_workers = " + std::to_string(c.switchless_ecall_workers) +
                            " must be fewer than enclave.tcs_count = " + std::to_string(c.tcs_count) +
                            " (each worker holds a TCS while it polls)");
  }
  if (c.attributes & 1ull) {
    return invalid_argument("enclave.attributes = " + format_value(c.attributes, Style::kHex) +
                            " sets INIT (bit 0), which only EINIT may set");
  }
  if (c.attributes & 2ull) {
    return invalid_argument("enclave.attributes = " + format_value(c.attributes, Style::kHex) +
                            " sets DEBUG (bit 1); use `debug = true` instead");
  }
  if (c.attributes & ~kAllowedAttributes) {
    return invalid_argument("enclave.attributes = " + format_value(c.attributes, Style::kHex) +
                            " sets reserved bits " +
                            format_value(c.attributes & ~kAllowedAttributes, Style::kHex) +
                            " (allowed: " + format_value(kAllowedAttributes, Style::kHex) + ")");
  }
  if ((c.xfrm & 0x3) != 0x3) {
    return invalid_argument("enclave.xfrm = " + format_value(c.xfrm, Style::kHex) +
                            " must include x87 and SSE (0x3)");
  }
  if (c.xfrm & ~kKnownXfrm) {
    return invalid_argument("enclave.xfrm = " + format_value(c.xfrm, Style::kHex) +
                            " sets unknown bits " + format_value(c.xfrm & ~kKnownXfrm, Style::kHex));
  }
  const uint64_t avx512 = c.xfrm & (7ull << 5);
  if (avx512 != 0 && (avx512 != (7ull << 5) || !(c.xfrm & (1ull << 2)))) {
    return invalid_argument("enclave.xfrm = " + format_value(c.xfrm, Style::kHex) +
                            ": AVX-512 needs all of bits 5-7 and AVX (bit 2)");
  }
  if ((c.xfrm & (3ull << 3)) != 0 && (c.xfrm & (3ull << 3)) != (3ull << 3)) {
    return invalid_argument("enclave.xfrm = " + format_value(c.xfrm, Style::kHex) +
                            ": MPX needs both bits 3 and 4");
  }
  if ((c.xfrm & (3ull << 17)) != 0 && (c.xfrm & (3ull << 17)) != (3ull << 17)) {
    return invalid_argument("enclave.xfrm = " + format_value(c.xfrm, Style::kHex) +
                            ": AMX needs both bits 17 and 18");
  }
  return Status::ok_status();
}

Result<EnclaveConfig> parse_config_toml(std::string_view text, const std::string& source_name) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return invalid_argument(source_name + ":" + std::to_string(where.line) + ":" +
                            std::to_string(where.column) + ": " + std::string(e.description()));
  } catch (const std::exception& e) {
    return invalid_argument(source_name + ": " + e.what());
  }
  EnclaveConfig config;
  for (auto&& [k, node] : root) {
    if (k.str() == "mount") {
      Status st = parse_mounts(node, &config.manifest);
      if (!st.ok()) return st.with_context(source_name);
      continue;
    }
    if (k.str() != "enclave") {
      return invalid_argument(source_name + ": unknown key '" + std::string(k.str()) +
                              "' (only the [enclave] table and [[mount]] tables are allowed)");
    }
    const toml::table* table = node.as_table();
    if (table == nullptr) return invalid_argument(source_name + ": 'enclave' must be a table");
    Status st = parse_enclave_table(*table, &config);
    if (!st.ok()) return st.with_context(source_name);
  }
  Status st = validate_config(config);
  if (!st.ok()) return st.with_context(source_name);
  return config;
}

std::vector<uint8_t> serialize_config(const EnclaveConfig& c) {
  std::vector<uint8_t> out(kRecordSize, 0);
  uint8_t* p = out.data();
  memcpy(p, kRecordMagic, 8);
  put32(p + 8, kRecordVersion);
  put32(p + 12, kRecordSize);
  put64(p + 16, c.heap_size);
  put64(p + 24, c.stack_size);
  put32(p + 32, c.tcs_count);
  put32(p + 36, c.ssa_frames);
  put32(p + 40, c.ssa_frame_pages);
  put32(p + 44, c.debug ? 1 : 0);
  put16(p + 48, c.isv_prod_id);
  put16(p + 50, c.isv_svn);
  put32(p + 52, c.misc_select);
  put32(p + 56, c.misc_mask);
  put64(p + 64, c.attributes);
  put64(p + 72, c.attributes_mask);
  put64(p + 80, c.xfrm);
  put64(p + 88, c.xfrm_mask);
  put64(p + 96, c.max_call_buffer);
  put16(p + 104, static_cast<uint16_t>(c.switchless_ocall_workers));
  put16(p + 106, static_cast<uint16_t>(c.switchless_ecall_workers));
  put32(p + 108, c.switchless_retries);
  return out;
}

Result<EnclaveConfig> deserialize_config(const uint8_t* data, size_t size) {
  if (data == nullptr || size != kRecordSize) {
    return corrupt("config record is " + std::to_string(size) + " bytes, expected " +
                   std::to_string(kRecordSize));
  }
  if (memcmp(data, kRecordMagic, 8) != 0) return corrupt("config record: bad magic");
  if (get32(data + 8) != kRecordVersion) {
    return unsupported("config record: version " + std::to_string(get32(data + 8)) +
                       " is not supported (expected " + std::to_string(kRecordVersion) + ")");
  }
  if (get32(data + 12) != kRecordSize) return corrupt("config record: wrong size field");
  const uint32_t debug = get32(data + 44);
  if (debug > 1) return corrupt("config record: debug flag is " + std::to_string(debug));
  if (get32(data + 60) != 0) return corrupt("config record: reserved bytes are not zero");
  for (size_t i = 112; i < kRecordSize; ++i) {
    if (data[i] != 0) return corrupt("config record: reserved bytes are not zero");
  }
  EnclaveConfig c;
  c.heap_size = get64(data + 16);
  c.stack_size = get64(data + 24);
  c.tcs_count = get32(data + 32);
  c.ssa_frames = get32(data + 36);
  c.ssa_frame_pages = get32(data + 40);
  c.debug = debug == 1;
  c.isv_prod_id = get16(data + 48);
  c.isv_svn = get16(data + 50);
  c.misc_select = get32(data + 52);
  c.misc_mask = get32(data + 56);
  c.attributes = get64(data + 64);
  c.attributes_mask = get64(data + 72);
  c.xfrm = get64(data + 80);
  c.xfrm_mask = get64(data + 88);
  c.max_call_buffer = get64(data + 96);
  c.switchless_ocall_workers = get16(data + 104);
  c.switchless_ecall_workers = get16(data + 106);
  c.switchless_retries = get32(data + 108);
  Status st = validate_config(c);
  if (!st.ok()) return st.with_context("config record");
  return c;
}

}  // namespace teemate::image
