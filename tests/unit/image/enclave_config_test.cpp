// Tests for enclave.toml parsing, range checks and the binary config record:
// every key is read, every out-of-range value is refused naming the file and
// key, and the record round-trips and refuses corruption.
#include "host/image/enclave_config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace teemate::image {
namespace {

Result<EnclaveConfig> parse(const std::string& text) { return parse_config_toml(text, "hello.toml"); }

void expect_error(const std::string& text, const std::string& message) {
  Result<EnclaveConfig> r = parse(text);
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_EQ(r.status().message(), message) << text;
}

void expect_error_contains(const std::string& text, const std::string& needle) {
  Result<EnclaveConfig> r = parse(text);
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

TEST(EnclaveConfig, EmptyTableGivesDefaults) {
  Result<EnclaveConfig> r = parse("[enclave]\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value(), EnclaveConfig{});
  Result<EnclaveConfig> empty = parse("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty.value(), EnclaveConfig{});
}

TEST(EnclaveConfig, ReadsEveryKey) {
  Result<EnclaveConfig> r = parse(R"(
# a full config
[enclave]
heap_size = "64M"
stack_size = 131072
tcs_count = 8
ssa_frames = 3
ssa_frame_pages = 2
debug = true
isv_prod_id = 42
isv_svn = 7
misc_select = 1
misc_mask = "0xfffffffe"
attributes = 0x10
attributes_mask = "0xfffffffffffffffb"
xfrm = 0x7
xfrm_mask = 0x3
max_call_buffer = "16M"
)");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const EnclaveConfig& c = r.value();
  EXPECT_EQ(c.heap_size, 64u << 20);
  EXPECT_EQ(c.stack_size, 128u << 10);
  EXPECT_EQ(c.tcs_count, 8u);
  EXPECT_EQ(c.ssa_frames, 3u);
  EXPECT_EQ(c.ssa_frame_pages, 2u);
  EXPECT_TRUE(c.debug);
  EXPECT_EQ(c.isv_prod_id, 42);
  EXPECT_EQ(c.isv_svn, 7);
  EXPECT_EQ(c.misc_select, 1u);
  EXPECT_EQ(c.misc_mask, 0xfffffffeu);
  EXPECT_EQ(c.attributes, 0x10u);
  EXPECT_EQ(c.attributes_mask, 0xfffffffffffffffbull);
  EXPECT_EQ(c.xfrm, 0x7u);
  EXPECT_EQ(c.xfrm_mask, 0x3u);
  EXPECT_EQ(c.max_call_buffer, 16u << 20);
}

TEST(EnclaveConfig, SizeSuffixes) {
  struct Case {
    const char* value;
    uint64_t bytes;
  } cases[] = {{"\"64K\"", 64 << 10},  {"\"64k\"", 64 << 10},   {"\"2M\"", 2 << 20},
               {"\"1G\"", 1ull << 30}, {"\"8MiB\"", 8 << 20},   {"\"8MB\"", 8 << 20},
               {"\"4096\"", 4096},     {"\"0x2000\"", 0x2000},  {"1_048_576", 1 << 20},
               {"\"1_024K\"", 1 << 20}};
  for (const Case& c : cases) {
    Result<EnclaveConfig> r = parse(std::string("[enclave]\nheap_size = ") + c.value + "\n");
    ASSERT_TRUE(r.ok()) << c.value << ": " << r.status().message();
    EXPECT_EQ(r->heap_size, c.bytes) << c.value;
  }
  expect_error("[enclave]\nheap_size = \"64X\"\n",
               "hello.toml: enclave.heap_size = \"64X\" is not a number (use bytes, or a number with "
               "suffix K, M or G such as \"64M\")");
  expect_error_contains("[enclave]\nheap_size = \"\"\n", "is not a number");
  expect_error_contains("[enclave]\nheap_size = \"M\"\n", "is not a number");
  expect_error_contains("[enclave]\nheap_size = \"99999999999999999999\"\n", "is not a number");
  expect_error_contains("[enclave]\nheap_size = \"17179869184G\"\n", "is not a number");  // overflow
  // Suffixes are for sizes only.
  expect_error_contains("[enclave]\ntcs_count = \"2K\"\n", "enclave.tcs_count = \"2K\" is not a number");
}

TEST(EnclaveConfig, EveryKeyOutOfRangeNamesTheKey) {
  struct Case {
    const char* line;
    const char* message;
  } cases[] = {
      {"heap_size = 0", "enclave.heap_size = 0 is out of range [4K, 64G]"},
      {"heap_size = \"65G\"", "enclave.heap_size = 65G is out of range [4K, 64G]"},
      {"heap_size = -4096", "enclave.heap_size = -4096 is out of range [4K, 64G]"},
      {"stack_size = \"4K\"", "enclave.stack_size = 4K is out of range [8K, 64M]"},
      {"stack_size = \"128M\"", "enclave.stack_size = 128M is out of range [8K, 64M]"},
      {"tcs_count = 0", "enclave.tcs_count = 0 is out of range [1, 1024]"},
      {"tcs_count = 1025", "enclave.tcs_count = 1025 is out of range [1, 1024]"},
      {"tcs_count = 4294967297", "enclave.tcs_count = 4294967297 is out of range [1, 1024]"},
      {"ssa_frames = 1", "enclave.ssa_frames = 1 is out of range [2, 16]"},
      {"ssa_frames = 17", "enclave.ssa_frames = 17 is out of range [2, 16]"},
      {"ssa_frame_pages = 0", "enclave.ssa_frame_pages = 0 is out of range [1, 16]"},
      {"ssa_frame_pages = 17", "enclave.ssa_frame_pages = 17 is out of range [1, 16]"},
      {"isv_prod_id = 65536", "enclave.isv_prod_id = 65536 is out of range [0, 65535]"},
      {"isv_prod_id = -1", "enclave.isv_prod_id = -1 is out of range [0, 65535]"},
      {"isv_svn = 70000", "enclave.isv_svn = 70000 is out of range [0, 65535]"},
      {"misc_select = 0x100000000", "enclave.misc_select = 0x100000000 is out of range [0x0, 0xffffffff]"},
      {"misc_mask = 0x100000000", "enclave.misc_mask = 0x100000000 is out of range [0x0, 0xffffffff]"},
      {"attributes = -1", "enclave.attributes = -1 is out of range [0x0, 0xffffffffffffffff]"},
      {"attributes_mask = -2", "enclave.attributes_mask = -2 is out of range [0x0, 0xffffffffffffffff]"},
      {"xfrm = -3", "enclave.xfrm = -3 is out of range [0x0, 0xffffffffffffffff]"},
      {"xfrm_mask = -4", "enclave.xfrm_mask = -4 is out of range [0x0, 0xffffffffffffffff]"},
      {"max_call_buffer = 4095", "enclave.max_call_buffer = 4095 is out of range [4K, 1G]"},
      {"max_call_buffer = \"2G\"", "enclave.max_call_buffer = 2G is out of range [4K, 1G]"},
      {"switchless_ocall_workers = 65", "enclave.switchless_ocall_workers = 65 is out of range [0, 64]"},
      {"switchless_ecall_workers = -1", "enclave.switchless_ecall_workers = -1 is out of range [0, 64]"},
      {"switchless_retries = 10000001", "enclave.switchless_retries = 10000001 is out of range [0, 10000000]"},
  };
  for (const Case& c : cases) {
    expect_error(std::string("[enclave]\n") + c.line + "\n", std::string("hello.toml: ") + c.message);
  }
}

TEST(EnclaveConfig, SwitchlessWorkers) {
  auto r = parse("[enclave]\ntcs_count = 4\nswitchless_ocall_workers = 2\nswitchless_ecall_workers = 3\n"
                 "switchless_retries = 5000\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->switchless_ocall_workers, 2u);
  EXPECT_EQ(r->switchless_ecall_workers, 3u);
  EXPECT_EQ(r->switchless_retries, 5000u);
  EXPECT_EQ(EnclaveConfig{}.switchless_retries, 20000u);
  // Each ECALL worker holds a TCS while it polls: one must stay for calls.
  expect_error_contains("[enclave]\ntcs_count = 4\nswitchless_ecall_workers = 4\n",
                        "enclave.switchless_ecall_workers = 4 must be fewer than enclave.tcs_count = 4");
}

TEST(EnclaveConfig, SizesMustBePageMultiples) {
  expect_error("[enclave]\nheap_size = 5000\n",
               "hello.toml: enclave.heap_size = 5000 is not a multiple of the page size (4096)");
  expect_error("[enclave]\nstack_size = \"9K\"\n",
               "hello.toml: enclave.stack_size = 9K is not a multiple of the page size (4096)");
  // max_call_buffer is a byte count, not a page count.
  EXPECT_TRUE(parse("[enclave]\nmax_call_buffer = 5000\n").ok());
}

TEST(EnclaveConfig, UnknownKeysAreErrors) {
  expect_error("[enclave]\nfoo = 1\n", "hello.toml: unknown key 'foo' in [enclave]");
  expect_error("[enclave]\nheap = \"1M\"\n", "hello.toml: unknown key 'heap' in [enclave]");
  expect_error("[enclave]\n[enclave.sub]\nx = 1\n", "hello.toml: unknown key 'sub' in [enclave]");
  expect_error("[other]\nx = 1\n",
               "hello.toml: unknown key 'other' (only the [enclave] table and [[mount]] tables are allowed)");
  expect_error("heap_size = 1\n",
               "hello.toml: unknown key 'heap_size' (only the [enclave] table and [[mount]] tables are allowed)");
  expect_error("enclave = 3\n", "hello.toml: 'enclave' must be a table");
}

TEST(EnclaveConfig, WrongTypesAreErrors) {
  expect_error("[enclave]\ndebug = 1\n", "hello.toml: enclave.debug must be true or false");
  expect_error_contains("[enclave]\ntcs_count = 1.5\n", "enclave.tcs_count must be an integer");
  expect_error_contains("[enclave]\nheap_size = true\n", "enclave.heap_size must be an integer");
  expect_error_contains("[enclave]\nisv_svn = [1]\n", "enclave.isv_svn must be an integer");
}

TEST(EnclaveConfig, SyntaxErrorsNameFileAndLine) {
  Result<EnclaveConfig> r = parse("[enclave]\nheap_size = \n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().rfind("hello.toml:2:", 0), 0u) << r.status().message();
  expect_error_contains("[enclave]\ntcs_count = 1\ntcs_count = 2\n", "hello.toml:3:");
  // Table headers that trip toml++ 3.3's parse_key precondition (upstream
  // PR #301) must still come back as ordinary errors.
  expect_error_contains("[%nclave]\n", "hello.toml:1:");
  expect_error_contains("[[[1]]]\n", "hello.toml:1:");
  expect_error_contains("[[=\n", "hello.toml:1:");
}

TEST(EnclaveConfig, AttributeAndXfrmRules) {
  expect_error_contains("[enclave]\nattributes = 2\n", "use `debug = true` instead");
  expect_error_contains("[enclave]\nattributes = 1\n", "INIT");
  expect_error_contains("[enclave]\nattributes = 0x100\n", "reserved bits 0x100");
  EXPECT_TRUE(parse("[enclave]\nattributes = 0x14\n").ok());  // MODE64BIT | PROVISIONKEY
  expect_error_contains("[enclave]\nxfrm = 1\n", "enclave.xfrm = 0x1 must include x87 and SSE (0x3)");
  expect_error_contains("[enclave]\nxfrm = 0x23\n", "AVX-512");
  expect_error_contains("[enclave]\nxfrm = 0x400003\n", "unknown bits");
  EXPECT_TRUE(parse("[enclave]\nxfrm = 0xe7\n").ok());  // x87 SSE AVX AVX-512
}

TEST(EnclaveConfig, ValidateConfigNamesTheKey) {
  EnclaveConfig c;
  EXPECT_TRUE(validate_config(c).ok());
  c.tcs_count = 0;
  EXPECT_EQ(validate_config(c).message(), "enclave.tcs_count = 0 is out of range [1, 1024]");
  c = EnclaveConfig{};
  c.stack_size = 12345;
  EXPECT_NE(validate_config(c).message().find("enclave.stack_size"), std::string::npos);
}

TEST(EnclaveConfig, RecordRoundTrips) {
  EnclaveConfig c;
  c.heap_size = 3u << 20;
  c.stack_size = 256u << 10;
  c.tcs_count = 17;
  c.ssa_frames = 5;
  c.ssa_frame_pages = 3;
  c.debug = true;
  c.isv_prod_id = 0xbeef;
  c.isv_svn = 0x1234;
  c.misc_select = 1;
  c.misc_mask = 0x7fffffff;
  c.attributes = 0x10;
  c.attributes_mask = 0xff00ff00ff00ff00ull;
  c.xfrm = 0x7;
  c.xfrm_mask = 0xe7;
  c.max_call_buffer = 12345;
  c.switchless_ocall_workers = 3;
  c.switchless_ecall_workers = 16;
  c.switchless_retries = 777;
  std::vector<uint8_t> rec = serialize_config(c);
  EXPECT_EQ(rec.size(), 128u);
  Result<EnclaveConfig> back = deserialize_config(rec.data(), rec.size());
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back.value(), c);
  // Little-endian and fixed: heap_size at 16.
  EXPECT_EQ(rec[16], 0x00);
  EXPECT_EQ(rec[18], 0x30);
  EXPECT_EQ(serialize_config(c), rec);  // deterministic
}

TEST(EnclaveConfig, RecordRefusesCorruption) {
  std::vector<uint8_t> rec = serialize_config(EnclaveConfig{});
  EXPECT_FALSE(deserialize_config(rec.data(), rec.size() - 1).ok());
  EXPECT_FALSE(deserialize_config(nullptr, 0).ok());
  auto bad = rec;
  bad[0] ^= 1;
  EXPECT_NE(deserialize_config(bad.data(), bad.size()).status().message().find("magic"), std::string::npos);
  bad = rec;
  bad[8] = 2;  // version
  EXPECT_NE(deserialize_config(bad.data(), bad.size()).status().message().find("version 2"),
            std::string::npos);
  bad = rec;
  bad[44] = 2;  // debug flag
  EXPECT_FALSE(deserialize_config(bad.data(), bad.size()).ok());
  bad = rec;
  bad[120] = 1;  // reserved
  EXPECT_NE(deserialize_config(bad.data(), bad.size()).status().message().find("reserved"),
            std::string::npos);
  bad = rec;
  bad[32] = 0;  // tcs_count = 0
  bad[33] = 0;
  Result<EnclaveConfig> r = deserialize_config(bad.data(), bad.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "config record: enclave.tcs_count = 0 is out of range [1, 1024]");
}


TEST(EnclaveConfig, MountsAreReadSortedAndChecked) {
  Result<EnclaveConfig> r = parse(
      "[[mount]]\npath = \"/srv/data\"\nhost = \"state\"\ntype = \"untrusted\"\n"
      "[[mount]]\npath = \"/etc\"\nhost = \"/opt/app/etc\"\ntype = \"trusted\"\n"
      "[[mount]]\npath = \"/db\"\nhost = \"db\"\ntype = \"protected\"\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& m = r->manifest.mounts;
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0], (MountSpec{"/db", "db", abi::kMountProtected}));
  EXPECT_EQ(m[1], (MountSpec{"/etc", "/opt/app/etc", abi::kMountTrusted}));
  EXPECT_EQ(m[2], (MountSpec{"/srv/data", "state", abi::kMountUntrusted}));
  EXPECT_TRUE(r->manifest.files.empty()) << "files are hashed by pack, not by the parser";
}

TEST(EnclaveConfig, BadMountsNameTheTableAndKey) {
  const std::string ok_rest = "host = \"h\"\ntype = \"untrusted\"\n";
  expect_error_contains("[[mount]]\npath = \"data\"\n" + ok_rest, "mount[0].path = \"data\" must be an absolute path");
  expect_error_contains("[[mount]]\npath = \"/a/../b\"\n" + ok_rest, "mount[0].path");
  expect_error_contains("[[mount]]\npath = \"/a/\"\n" + ok_rest, "mount[0].path");
  expect_error_contains("[[mount]]\npath = \"/a//b\"\n" + ok_rest, "mount[0].path");
  expect_error_contains("[[mount]]\npath = \"/a\"\nhost = \"\"\ntype = \"untrusted\"\n", "mount[0].host");
  expect_error_contains("[[mount]]\npath = \"/a\"\nhost = \"h\"\ntype = \"secret\"\n",
                        "mount[0].type = \"secret\" is not trusted, protected or untrusted");
  expect_error_contains("[[mount]]\npath = \"/a\"\ntype = \"trusted\"\n", "mount[0] has no host");
  expect_error_contains("[[mount]]\nhost = \"h\"\ntype = \"trusted\"\n", "mount[0] has no path");
  expect_error_contains("[[mount]]\npath = \"/a\"\nhost = \"h\"\n", "mount[0] has no type");
  expect_error_contains("[[mount]]\npath = \"/a\"\n" + ok_rest + "mode = 1\n", "unknown key 'mode' in mount[0]");
  expect_error_contains("[[mount]]\npath = 5\n" + ok_rest, "mount[0].path must be a string");
  expect_error_contains("mount = 3\n", "'mount' must be an array of tables");
  expect_error_contains("[[mount]]\npath = \"/a\"\n" + ok_rest + "[[mount]]\npath = \"/a\"\n" + ok_rest,
                        "two [[mount]] tables have path \"/a\"");
  std::string many;
  for (int i = 0; i < 65; ++i) many += "[[mount]]\npath = \"/m" + std::to_string(i) + "\"\n" + ok_rest;
  expect_error_contains(many, "65 [[mount]] tables; at most 64");
}

TEST(MountManifest, NormalisedPaths) {
  for (const char* good : {"/", "/a", "/a/b", "/a.b/..c", "/.x"}) EXPECT_TRUE(is_normalized_enclave_path(good)) << good;
  for (const char* bad : {"", "a", "/a/", "//a", "/a/./b", "/a/../b", "/..", "/."}) {
    EXPECT_FALSE(is_normalized_enclave_path(bad)) << bad;
  }
  EXPECT_FALSE(is_normalized_enclave_path(std::string(4096, 'a').insert(0, "/")));
}

TEST(MountManifest, TrustedFilesMustLieUnderATrustedMount) {
  MountManifest m;
  m.mounts = {{"/data", "d", abi::kMountUntrusted}, {"/data/ro", "r", abi::kMountTrusted}};
  m.files = {{"/data/ro/x", 1, {}}};
  EXPECT_TRUE(normalize_and_check(&m).ok());
  m.files = {{"/data/x", 1, {}}};
  Status st = normalize_and_check(&m);
  EXPECT_NE(st.message().find("not under a trusted mount"), std::string::npos) << st.message();
  m.files = {{"/data/ro/x", 1, {}}, {"/data/ro/x", 1, {}}};
  EXPECT_NE(normalize_and_check(&m).message().find("listed twice"), std::string::npos);
}


// Review regressions: a deeper mount shadows a trusted tree's files, and a
// symbolic link is hashed under its own name.
TEST(MountManifest, HashingSkipsShadowedFilesAndKeepsLinkNames) {
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/teemate-manifest-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const fs::path root = tmpl;
  fs::create_directories(root / "tree/data");
  std::ofstream(root / "tree/ok") << "ok";
  std::ofstream(root / "tree/data/shadowed") << "never seen through /";
  fs::create_symlink("ok", root / "tree/alias");
  MountManifest m;
  m.mounts = {{"/", (root / "tree").string(), abi::kMountTrusted},
              {"/data", (root / "data").string(), abi::kMountUntrusted}};
  Status st = hash_trusted_files(&m);
  ASSERT_TRUE(st.ok()) << st.message();
  std::vector<std::string> paths;
  for (const auto& f : m.files) paths.push_back(f.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"/alias", "/ok"}));
  EXPECT_EQ(m.files[0].sha256, m.files[1].sha256);
  fs::remove_all(root);
}

}  // namespace
}  // namespace teemate::image
