// The enclave's file services end to end: tests/enclaves/files_enclave.c
// runs under `teemate enclave run` in a working directory prepared here
// (data/ for the untrusted mount, a copy of tests/enclaves/files/trusted
// for the trusted one), and its scenarios check POSIX calls and musl stdio
// on each mount type, the refusal of a tampered or unlisted trusted file,
// that no path leaves its mount, and that protected files are encrypted and
// refuse every change the host can make short of a rollback.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "host/image/image_file.h"
#include "run_program.h"

namespace {

namespace fs = std::filesystem;

using teemate::testing::build_dir;
std::string source_dir() {
  const char* d = std::getenv("TEEMATE_SOURCE_DIR");
  return d ? d : ".";
}

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/teemate-files-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "data");
    fs::create_directories(dir_ / "secret");
    fs::create_directories(dir_ / "files");
    fs::copy(fs::path(source_dir()) / "tests/enclaves/files/trusted", dir_ / "files/trusted",
             fs::copy_options::recursive);
    std::ofstream(dir_ / "files/trusted/unlisted.txt") << "not in the manifest\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs the scenario in the prepared directory; `env`: extra NAME=value
  // settings (the hostile host shim's).
  int run(const std::string& scenario, std::string* out, const std::vector<std::string>& env = {}) {
    return teemate::testing::run_program(build_dir() + "/enclaves/files.tme", {scenario}, out, dir_.string(), env);
  }

  fs::path dir_;
};

TEST_F(FilesTest, TheImageCarriesTheMountsAndTrustedDigests) {
  auto img = teemate::image::read_image_file(build_dir() + "/enclaves/files.tme");
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  const auto& m = img->config.manifest;
  ASSERT_EQ(m.mounts.size(), 3u);
  ASSERT_EQ(m.files.size(), 2u);
  EXPECT_EQ(m.files[0].path, "/etc/app/hello.txt");
  EXPECT_EQ(m.files[1].path, "/etc/app/sub/numbers.txt");
  EXPECT_EQ(m.files[0].size, 26u);
}

TEST_F(FilesTest, UntrustedMountServesPosixAndStdio) {
  std::string out;
  EXPECT_EQ(run("untrusted", &out), 0) << out;
  EXPECT_NE(out.find("untrusted ok"), std::string::npos) << out;
  // What the enclave wrote is on the host, in clear.
  std::ifstream notes(dir_ / "data/notes.txt");
  std::string first;
  std::getline(notes, first);
  EXPECT_EQ(first, "line 0");
  EXPECT_FALSE(fs::exists(dir_ / "data/dir"));
}

TEST_F(FilesTest, TrustedMountServesMeasuredFilesOnly) {
  std::string out;
  EXPECT_EQ(run("trusted", &out), 0) << out;
  EXPECT_NE(out.find("trusted ok"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir_ / "files/trusted/hello.txt")) << "the enclave must not have removed it";
}

TEST_F(FilesTest, ATamperedTrustedFileIsRefused) {
  for (const char* content : {"hello from a trusted filE\n", "hello from a trusted file\nmore", "hello"}) {
    std::ofstream(dir_ / "files/trusted/hello.txt", std::ios::trunc) << content;
    std::string out;
    EXPECT_EQ(run("tampered", &out), 0) << "content: " << content << "\n" << out;
    EXPECT_NE(out.find("tampered refused"), std::string::npos) << out;
  }
}

TEST_F(FilesTest, PathsNeverLeaveTheirMount) {
  std::string out;
  EXPECT_EQ(run("paths", &out), 0) << out;
  EXPECT_NE(out.find("paths ok"), std::string::npos) << out;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

TEST_F(FilesTest, ProtectedFilesRoundTripEncrypted) {
  std::string out;
  ASSERT_EQ(run("protected-write", &out), 0) << out;
  const std::string db = slurp(dir_ / "secret/db.bin");
  EXPECT_EQ(db.size(), 4096u + 4 * 4124u) << "header page and four chunk records";
  EXPECT_EQ(db.find("PLAINTEXT-MARKER"), std::string::npos) << "plaintext reached the host";
  EXPECT_EQ(slurp(dir_ / "secret/notes.txt").find("PLAINTEXT-MARKER"), std::string::npos);
  out.clear();
  EXPECT_EQ(run("protected-read", &out), 0) << out;
  EXPECT_NE(out.find("protected ok"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir_ / "secret/moved.bin"));
}

TEST_F(FilesTest, ReviewRegressions) {
  std::string out;
  EXPECT_EQ(run("review", &out), 0) << out;
  EXPECT_NE(out.find("review ok"), std::string::npos) << out;
  EXPECT_EQ(slurp(dir_ / "data/x"), "HELLOX");
}

// A host that answers an open with a descriptor the enclave already owns
// (or with its own stdout) gets an error, never the data of another file.
TEST_F(FilesTest, AHostAliasingDescriptorsIsRefused) {
  // The shim is not sanitized: let an ASan-built teemate accept it.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string asan_env = std::string("ASAN_OPTIONS=") + (asan ? asan : "") + ":verify_asan_link_order=0";
  for (const char* mode : {"alias", "stdout"}) {
    std::string out;
    const int rc = run("alias", &out,
                       {std::string("LD_PRELOAD=") + TEEMATE_HOSTILE_SHIM, std::string("HOSTILE_MODE=") + mode,
                        "HOSTILE_PREV=data/pub", "HOSTILE_MATCH=secret/leak", asan_env});
    EXPECT_EQ(rc, 0) << mode << "\n" << out;
    EXPECT_NE(out.find("alias refused"), std::string::npos) << mode << "\n" << out;
    EXPECT_EQ(slurp(dir_ / "data/pub"), "public") << mode;
  }
}

// Every change the host can make to a protected file is an error, never data.
TEST_F(FilesTest, TamperedProtectedFilesAreRefused) {
  std::string out;
  ASSERT_EQ(run("protected-write", &out), 0) << out;
  const fs::path db = dir_ / "secret/db.bin";
  const std::string good = slurp(db);
  const size_t rec = 4124, hdr = 4096;
  ASSERT_EQ(good.size(), hdr + 4 * rec);
  struct Tamper {
    const char* what;
    std::string bytes;
  };
  std::vector<Tamper> cases;
  auto flip = [&](size_t at) {
    std::string b = good;
    b[at] ^= 0x01;
    return b;
  };
  cases.push_back({"bit flipped in chunk 1", flip(hdr + rec + 100)});
  cases.push_back({"bit flipped in a chunk tag", flip(hdr + rec - 1)});
  cases.push_back({"bit flipped in a chunk IV", flip(hdr + 2)});
  cases.push_back({"plaintext size changed in the header", flip(64)});
  cases.push_back({"root tag changed", flip(100)});
  cases.push_back({"padding of the header changed", flip(200)});
  {
    std::string b = good;
    std::copy(good.begin() + hdr, good.begin() + hdr + rec, b.begin() + hdr + rec);
    std::copy(good.begin() + hdr + rec, good.begin() + hdr + 2 * rec, b.begin() + hdr);
    cases.push_back({"chunks 0 and 1 swapped", b});
  }
  cases.push_back({"last chunk cut off", good.substr(0, good.size() - rec)});
  cases.push_back({"truncated inside a chunk", good.substr(0, good.size() - 10)});
  cases.push_back({"extended by a copy of a chunk", good + good.substr(hdr + rec, rec)});
  cases.push_back({"extended by one byte", good + "x"});
  cases.push_back({"emptied", ""});
  cases.push_back({"header only", good.substr(0, hdr)});
  cases.push_back({"another protected file (renamed by the host)", slurp(dir_ / "secret/notes.txt")});
  for (const Tamper& t : cases) {
    spit(db, t.bytes);
    out.clear();
    EXPECT_EQ(run("protected-check", &out), 0) << t.what << "\n" << out;
    EXPECT_NE(out.find("protected refused"), std::string::npos) << t.what << "\n" << out;
  }
  // Untouched, it still reads (the checks above are not refusing everything).
  spit(db, good);
  out.clear();
  EXPECT_EQ(run("protected-read", &out), 0) << out;
}

}  // namespace
