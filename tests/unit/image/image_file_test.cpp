// Tests for the .tme format: round trips in memory and on disk, atomic
// writes that leave nothing behind on failure, refusal of corrupt or
// truncated images with clear messages, load_image and the signature check.
#include "host/image/image_file.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf_builder.h"
#include "host/image/file_util.h"

namespace teemate::image {
namespace {

using testing::ElfBuilder;

ImageFile make_image() {
  ImageFile f;
  f.config.tcs_count = 3;
  f.config.isv_prod_id = 5;
  f.config.heap_size = 64 * 4096;
  f.elf_bytes = std::make_shared<const std::vector<uint8_t>>(ElfBuilder::basic().build());
  return f;
}

void expect_refused(const std::vector<uint8_t>& bytes, const std::string& needle) {
  Result<ImageFile> r = parse_image(bytes, "x.tme");
  ASSERT_FALSE(r.ok()) << "expected refusal mentioning " << needle;
  EXPECT_EQ(r.status().message().rfind("x.tme: ", 0), 0u) << r.status().message();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/teemate-image-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    for (const std::string& n : entries()) unlink((path_ + "/" + n).c_str());
    rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    DIR* d = opendir(path_.c_str());
    if (d == nullptr) return out;
    while (dirent* e = readdir(d)) {
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) out.push_back(e->d_name);
    }
    closedir(d);
    return out;
  }

 private:
  std::string path_;
};

// One RSA-3072 key for the whole suite (generation is slow).
const sgx::SigningKey& test_key() {
  static sgx::SigningKey* key = [] {
    Result<sgx::SigningKey> k = sgx::SigningKey::generate();
    EXPECT_TRUE(k.ok()) << k.status().message();
    return new sgx::SigningKey(std::move(k).value());
  }();
  return *key;
}

LoadedImage load(const ImageFile& f) {
  Result<LoadedImage> r = load_image_bytes(serialize_image(f), "x.tme");
  EXPECT_TRUE(r.ok()) << r.status().message();
  return std::move(r).value();
}

LoadedImage signed_image() {
  LoadedImage img = load(make_image());
  const sgx::Digest mr = img.layout.measure();
  Result<sgx::Sigstruct> sig = sgx::sign_sigstruct(sigstruct_fields_for(img.layout, mr), test_key());
  EXPECT_TRUE(sig.ok()) << sig.status().message();
  img.file.sigstruct = sig.value();
  img.file.is_signed = true;
  return img;
}

TEST(ImageFile, RoundTripsInMemory) {
  ImageFile f = make_image();
  std::vector<uint8_t> bytes = serialize_image(f);
  EXPECT_EQ(memcmp(bytes.data(), "TEEMATE\x01", 8), 0);
  EXPECT_EQ(bytes.size(), 4096 + f.elf_bytes->size());
  Result<ImageFile> r = parse_image(bytes, "x.tme");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->config, f.config);
  EXPECT_EQ(*r->elf_bytes, *f.elf_bytes);
  EXPECT_FALSE(r->is_signed);
  EXPECT_EQ(serialize_image(r.value()), bytes);
}

TEST(ImageFile, RoundTripsSignedOnDisk) {
  TempDir dir;
  LoadedImage img = signed_image();
  const std::string path = dir.path() + "/a.tme";
  ASSERT_TRUE(write_image_file(path, img.file).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"a.tme"});  // no temporary left

  Result<ImageFile> back = read_image_file(path);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(back->is_signed);
  EXPECT_EQ(memcmp(&back->sigstruct, &img.file.sigstruct, sizeof(sgx::Sigstruct)), 0);
  Result<LoadedImage> loaded = load_image(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_TRUE(check_image_signature(loaded.value()).ok());
  EXPECT_EQ(loaded->layout.measure(), img.layout.measure());
}

TEST(ImageFile, FailedWriteLeavesNothing) {
  TempDir dir;
  ImageFile f = make_image();
  Status st = write_image_file(dir.path() + "/missing/a.tme", f);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("missing/a.tme"), std::string::npos) << st.message();
  // Target is a directory: the rename fails, the temporary must go.
  ASSERT_EQ(mkdir((dir.path() + "/d.tme").c_str(), 0755), 0);
  EXPECT_FALSE(write_image_file(dir.path() + "/d.tme", f).ok());
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"d.tme"});
  rmdir((dir.path() + "/d.tme").c_str());
  // An image without ELF bytes is never written.
  ImageFile empty;
  EXPECT_FALSE(write_image_file(dir.path() + "/e.tme", empty).ok());
  EXPECT_TRUE(dir.entries().empty());
}

TEST(ImageFile, AtomicWriteWithoutOverwriteKeepsExistingFile) {
  TempDir dir;
  const std::string path = dir.path() + "/k.pem";
  const uint8_t a[] = {'a'};
  const uint8_t b[] = {'b', 'b'};
  ASSERT_TRUE(write_file_atomic(path, a, 0600, false).ok());
  Status st = write_file_atomic(path, b, 0600, false);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("already exists"), std::string::npos);
  Result<std::vector<uint8_t>> content = read_file(path, 100);
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(content->size(), 1u);
  EXPECT_EQ(dir.entries().size(), 1u);
  struct stat sb;
  ASSERT_EQ(stat(path.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  EXPECT_TRUE(write_file_atomic(path, b, 0600, true).ok());
  EXPECT_EQ(read_file(path, 100)->size(), 2u);
  EXPECT_FALSE(read_file(path, 1).ok());  // over the limit
  EXPECT_EQ(read_file(dir.path() + "/nope", 100).status().code(), Code::kNotFound);
}

TEST(ImageFile, EveryTruncationIsRefused) {
  std::vector<uint8_t> bytes = serialize_image(make_image());
  for (size_t n = 0; n < bytes.size(); n += (n < 300 ? 1 : 97)) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<long>(n));
    EXPECT_FALSE(parse_image(cut, "x.tme").ok()) << n;
  }
  expect_refused(std::vector<uint8_t>(bytes.begin(), bytes.begin() + 10), "shorter than the 64-byte image header");
  expect_refused(std::vector<uint8_t>(bytes.begin(), bytes.end() - 1), "outside the file");
}

TEST(ImageFile, RefusesCorruptHeaders) {
  const std::vector<uint8_t> good = serialize_image(make_image());
  auto b = good;
  b[0] = 'X';
  expect_refused(b, "not a TeeMate image");
  b = good;
  b[7] = 2;
  expect_refused(b, "not supported");
  b = good;
  testing::patch32(&b, 8, 9);
  expect_refused(b, "image format version 9");
  b = good;
  testing::patch32(&b, 12, 128);
  expect_refused(b, "header size");
  b = good;
  testing::patch32(&b, 28, 4);
  expect_refused(b, "unknown header flags 0x4");
  b = good;
  testing::patch32(&b, 60, 1);  // a manifest byte the file does not have
  expect_refused(b, "mount manifest section");
  b = good;
  testing::patch32(&b, 8, 1);  // version 1: the field is reserved
  testing::patch32(&b, 60, 1);
  expect_refused(b, "reserved");
  b = good;
  testing::patch32(&b, 60, 17u << 20);
  expect_refused(b, "more than 16 MiB");
  b = good;
  testing::patch64(&b, 32, ~uint64_t{0} - 100);  // ELF offset wraps
  expect_refused(b, "ELF section");
  b = good;
  testing::patch64(&b, 40, 0);
  expect_refused(b, "ELF section is empty");
  b = good;
  testing::patch32(&b, 56, 1024);
  expect_refused(b, "SIGSTRUCT section is 1024 bytes");
  b = good;
  testing::patch64(&b, 48, 100);  // SIGSTRUCT over the config record
  expect_refused(b, "overlap");
  b = good;
  testing::patch64(&b, 16, 0);  // config inside the header
  expect_refused(b, "config record section at 0x0 overlaps the header");
  b = good;
  b.push_back(0);
  expect_refused(b, "unexpected bytes after the last section");
}

TEST(ImageFile, RefusesCorruptConfigAndSignatureSections) {
  const std::vector<uint8_t> good = serialize_image(make_image());
  auto b = good;
  b[64 + 32] = 0;  // tcs_count = 0 (record at 64, field at 32)
  expect_refused(b, "config record: enclave.tcs_count = 0 is out of range [1, 1024]");
  b = good;
  testing::patch32(&b, 24, 127);
  expect_refused(b, "config record is 127 bytes");
  b = good;
  b[192 + 5] = 1;  // unsigned but SIGSTRUCT not zero
  expect_refused(b, "non-zero SIGSTRUCT");
}

TEST(ImageFile, LoadImageReportsElfErrors) {
  ImageFile f = make_image();
  std::vector<uint8_t> elf = *f.elf_bytes;
  elf[EI_CLASS] = ELFCLASS32;
  f.elf_bytes = std::make_shared<const std::vector<uint8_t>>(elf);
  Result<LoadedImage> r = load_image_bytes(serialize_image(f), "x.tme");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().rfind("x.tme (ELF): not a 64-bit ELF", 0), 0u) << r.status().message();

  Result<LoadedImage> missing = load_image("/nonexistent/x.tme");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/x.tme"), std::string::npos);
}

TEST(ImageFile, LoadImageComputesLayout) {
  LoadedImage img = load(make_image());
  EXPECT_EQ(img.layout.config().tcs_count, 3u);
  EXPECT_EQ(img.elf.segments().size(), 3u);
  EXPECT_GE(img.layout.meta().meta_offset, img.elf.end());
  EXPECT_EQ(img.layout.elf().shared_bytes().get(), img.elf.shared_bytes().get());
}

TEST(ImageSignature, SignedImageVerifies) {
  LoadedImage img = signed_image();
  EXPECT_TRUE(check_image_signature(img).ok()) << check_image_signature(img).message();
  EXPECT_TRUE(check_image_signature(img, img.layout.measure()).ok());
}

TEST(ImageSignature, UnsignedImageIsRefused) {
  LoadedImage img = load(make_image());
  Status st = check_image_signature(img);
  EXPECT_EQ(st.code(), Code::kSecurity);
  EXPECT_NE(st.message().find("not signed"), std::string::npos);
}

TEST(ImageSignature, TamperedElfIsRefused) {
  LoadedImage img = signed_image();
  ImageFile f = img.file;
  std::vector<uint8_t> elf = *f.elf_bytes;
  elf[4096 + 1] ^= 0xff;  // a byte of the R segment (file offset 4096)
  f.elf_bytes = std::make_shared<const std::vector<uint8_t>>(elf);
  LoadedImage tampered = load(f);
  Status st = check_image_signature(tampered);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("ENCLAVEHASH"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("changed after signing"), std::string::npos);
}

TEST(ImageSignature, ConfigIdentityMustMatchSigstruct) {
  LoadedImage img = signed_image();
  const sgx::Digest mr = img.layout.measure();
  // A SIGSTRUCT over the right measurement whose identity fields disagree
  // with the config is refused, naming the field.
  struct Case {
    const char* needle;
    void (*change)(sgx::SigstructFields&);
  } cases[] = {
      {"ISVPRODID", [](sgx::SigstructFields& f) { f.isv_prod_id++; }},
      {"ISVSVN", [](sgx::SigstructFields& f) { f.isv_svn++; }},
      {"MISCMASK", [](sgx::SigstructFields& f) { f.misc_mask = 1; }},
      {"ATTRIBUTES.FLAGS", [](sgx::SigstructFields& f) { f.attributes.flags |= sgx::kAttrProvisionKey; }},
      {"ATTRIBUTES.XFRM", [](sgx::SigstructFields& f) { f.attributes.xfrm = 7; }},
      {"ATTRIBUTEMASK.FLAGS", [](sgx::SigstructFields& f) { f.attribute_mask.flags = 1; }},
      {"ATTRIBUTEMASK.XFRM", [](sgx::SigstructFields& f) { f.attribute_mask.xfrm = 7; }},
  };
  for (const Case& c : cases) {
    sgx::SigstructFields fields = sigstruct_fields_for(img.layout, mr);
    c.change(fields);
    Result<sgx::Sigstruct> sig = sgx::sign_sigstruct(fields, test_key());
    ASSERT_TRUE(sig.ok()) << sig.status().to_string();
    ImageFile f = img.file;
    f.sigstruct = *sig;
    Status st = check_image_signature(load(f));
    ASSERT_FALSE(st.ok()) << c.needle;
    EXPECT_NE(st.message().find(c.needle), std::string::npos) << st.message();
  }
  // Every config field is measured (the metadata page holds the config
  // record), so changing one after signing breaks ENCLAVEHASH.
  {
    ImageFile f = img.file;
    f.config.isv_svn++;
    Status st = check_image_signature(load(f));
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("ENCLAVEHASH"), std::string::npos) << st.message();
  }
  // Measured fields change MRENCLAVE itself.
  ImageFile f = img.file;
  f.config.heap_size += 4096;
  EXPECT_NE(check_image_signature(load(f)).message().find("ENCLAVEHASH"), std::string::npos);
}

TEST(ImageSignature, BrokenSignatureIsRefused) {
  LoadedImage img = signed_image();
  img.file.sigstruct.signature[10] ^= 1;
  Status st = check_image_signature(img);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kSecurity);
  EXPECT_EQ(st.message().rfind("SIGSTRUCT: ", 0), 0u) << st.message();
}


// Version 1 images (no manifest field) stay readable.
TEST(ImageFile, ReadsFormatVersion1) {
  std::vector<uint8_t> b = serialize_image(make_image());
  testing::patch32(&b, 8, 1);
  Result<ImageFile> r = parse_image(b, "x.tme");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->config.manifest.empty());
}

ImageFile image_with_mounts() {
  ImageFile f = make_image();
  f.config.manifest.mounts = {{"/data", "state", abi::kMountUntrusted}, {"/etc", "conf", abi::kMountTrusted}};
  TrustedFileDigest d;
  d.path = "/etc/app.conf";
  d.size = 12;
  d.sha256.fill(0xab);
  f.config.manifest.files = {d};
  EXPECT_TRUE(normalize_and_check(&f.config.manifest).ok());
  return f;
}

TEST(ImageFile, MountManifestRoundTripsAndIsMeasured) {
  const ImageFile f = image_with_mounts();
  Result<ImageFile> r = parse_image(serialize_image(f), "x.tme");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->config.manifest, f.config.manifest);
  const LoadedImage with = load(f);
  const LoadedImage without = load(make_image());
  EXPECT_NE(with.layout.measure(), without.layout.measure()) << "the manifest must be measured";
  EXPECT_EQ(with.layout.meta().manifest_offset, with.layout.meta().meta_offset + 4096);
  EXPECT_GT(with.layout.meta().manifest_size, sizeof(abi::ManifestHeader));
  EXPECT_EQ(without.layout.meta().manifest_size, 0u);
  // Another digest: another MRENCLAVE.
  ImageFile g = f;
  g.config.manifest.files[0].sha256[0] ^= 1;
  EXPECT_NE(load(g).layout.measure(), with.layout.measure());
}

TEST(ImageFile, RefusesCorruptMountManifests) {
  const std::vector<uint8_t> good = serialize_image(image_with_mounts());
  uint32_t msize = 0;
  memcpy(&msize, good.data() + 60, 4);
  const size_t at = good.size() - msize;
  auto b = good;
  b[at] ^= 1;
  expect_refused(b, "mount manifest: bad magic");
  b = good;
  testing::patch32(&b, at + 16, 65);  // mount count
  expect_refused(b, "too many entries");
  b = good;
  testing::patch32(&b, at + 32, 7);  // mount 0's type
  expect_refused(b, "mount 0 is malformed");
  b = good;
  testing::patch32(&b, at + 36, 0xfffffff0);  // mount 0's path offset
  expect_refused(b, "mount 0 is malformed");
  // Every truncation of the manifest is refused.
  for (uint32_t cut = 1; cut < msize; ++cut) {
    b = good;
    b.resize(good.size() - cut);
    testing::patch32(&b, 60, msize - cut);
    Result<ImageFile> r = parse_image(b, "x.tme");
    EXPECT_FALSE(r.ok()) << "cut " << cut;
  }
}

}  // namespace
}  // namespace teemate::image
