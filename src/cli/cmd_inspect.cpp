// `teemate inspect`: shows an image's layout, configuration and identities,
// as a table or as one JSON object that carries every measured page, so that
// MRENCLAVE can be recomputed by an independent tool. Reads only (except the
// optional raw SIGSTRUCT, written atomically). The JSON is streamed page by
// page; an image is never expanded in memory.
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <memory>

#include "base/base64.h"
#include "base/hex.h"
#include "cli/commands.h"
#include "host/image/file_util.h"
#include "host/image/image_file.h"

namespace teemate::cli {

namespace {

struct InspectOptions {
  std::string image;
  bool json = false;
  std::string sigstruct_out;
};

using base::hex;

std::string perms(uint64_t flags) {
  if (sgx::secinfo_get_page_type(flags) == sgx::kPtTcs) return "tcs";
  std::string s;
  s += (flags & sgx::kSecinfoR) ? 'r' : '-';
  s += (flags & sgx::kSecinfoW) ? 'w' : '-';
  s += (flags & sgx::kSecinfoX) ? 'x' : '-';
  return s;
}

nlohmann::json mounts_json(const image::MountManifest& m) {
  nlohmann::json out = nlohmann::json::array();
  for (const image::MountSpec& s : m.mounts) {
    nlohmann::json files = nlohmann::json::array();
    for (const image::TrustedFileDigest& f : m.files) {
      if (f.path == s.path || f.path.starts_with(s.path == "/" ? s.path : s.path + "/")) {
        files.push_back({{"path", f.path}, {"size", f.size}, {"sha256", sgx::to_hex(f.sha256)}});
      }
    }
    nlohmann::json j{{"path", s.path}, {"host", s.host}, {"type", image::mount_type_name(s.type)}};
    if (s.type == abi::kMountTrusted) j["files"] = std::move(files);
    out.push_back(std::move(j));
  }
  return out;
}

nlohmann::json config_json(const image::EnclaveConfig& c) {
  return nlohmann::json{
      {"heap_size", c.heap_size},
      {"stack_size", c.stack_size},
      {"tcs_count", c.tcs_count},
      {"ssa_frames", c.ssa_frames},
      {"ssa_frame_pages", c.ssa_frame_pages},
      {"debug", c.debug},
      {"isv_prod_id", c.isv_prod_id},
      {"isv_svn", c.isv_svn},
      {"misc_select", hex(c.misc_select)},
      {"misc_mask", hex(c.misc_mask)},
      {"attributes", hex(c.attributes)},
      {"attributes_mask", hex(c.attributes_mask)},
      {"xfrm", hex(c.xfrm)},
      {"xfrm_mask", hex(c.xfrm_mask)},
      {"max_call_buffer", c.max_call_buffer},
      {"mounts", mounts_json(c.manifest)},
  };
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Buffered writer to stdout; remembers the first write error.
class Out {
 public:
  void put(const std::string& s) {
    buf_ += s;
    if (buf_.size() >= (1u << 20)) flush();
  }
  std::string& raw() { return buf_; }
  void flush() {
    if (!buf_.empty() && std::fwrite(buf_.data(), 1, buf_.size(), stdout) != buf_.size()) failed_ = true;
    buf_.clear();
  }
  bool failed() const { return failed_; }

 private:
  std::string buf_;
  bool failed_ = false;
};

Status stream_json(const std::string& path, const image::LoadedImage& img) {
  const image::Layout& l = img.layout;
  Out out;
  out.put("{\"image\":" + dump(path));
  out.put(",\"size\":" + std::to_string(l.size()));
  out.put(",\"ssaframesize\":" + std::to_string(l.ssa_frame_pages()));
  out.put(",\"signed\":" + std::string(img.file.is_signed ? "true" : "false"));
  out.put(",\"mrsigner\":" +
          (img.file.is_signed ? "\"" + sgx::to_hex(sgx::mrsigner_of(img.file.sigstruct)) + "\"" : "null"));
  const sgx::Attributes a = l.attributes();
  out.put(",\"attributes\":" + dump({{"flags", hex(a.flags)}, {"xfrm", hex(a.xfrm)}}));
  out.put(",\"misc_select\":" + std::to_string(l.misc_select()));
  out.put(",\"entry\":" + std::to_string(l.entry_offset()));
  out.put(",\"config\":" + dump(config_json(l.config())));
  nlohmann::json ranges = nlohmann::json::array();
  for (const image::PageRange& r : l.ranges()) {
    ranges.push_back({{"kind", image::range_kind_name(r.kind)},
                      {"offset", r.offset},
                      {"pages", r.pages},
                      {"secinfo_flags", r.secinfo_flags},
                      {"perms", perms(r.secinfo_flags)},
                      {"measured", r.measured},
                      {"thread", r.thread}});
  }
  out.put(",\"ranges\":" + dump(ranges));

  // Pages in EADD order, measured as they are written, so the image is read
  // once and MRENCLAVE comes last.
  sgx::MeasurementBuilder mb;
  mb.ecreate(l.ssa_frame_pages(), l.size());
  alignas(64) uint8_t page[sgx::kPageSize];
  out.put(",\"pages\":[");
  bool first = true;
  for (const image::PageRange& r : l.ranges()) {
    for (uint64_t i = 0; i < r.pages; ++i) {
      const uint64_t offset = r.offset + i * sgx::kPageSize;
      l.page_content(r, i, page);
      mb.add_page(offset, r.secinfo_flags, page, r.measured);
      std::string& s = out.raw();
      s += first ? "{\"offset\":" : ",{\"offset\":";
      first = false;
      s += std::to_string(offset);
      s += ",\"secinfo_flags\":";
      s += std::to_string(r.secinfo_flags);
      s += r.measured ? ",\"measured\":true,\"data\":\"" : ",\"measured\":false}";
      if (r.measured) {
        base::append_base64(std::span<const uint8_t>(page, sizeof page), &s);
        s += "\"}";
      }
      out.put("");
      if (out.failed()) return io_error("cannot write to standard output", errno);
    }
  }
  out.put("],\"mrenclave\":\"" + sgx::to_hex(mb.finish()) + "\"}\n");
  out.flush();
  if (out.failed()) return io_error("cannot write to standard output", errno);
  return flush_stdout();
}

Status print_text(const std::string& path, const image::LoadedImage& img) {
  const image::Layout& l = img.layout;
  const image::EnclaveConfig& c = l.config();
  std::printf("image         %s (%s)\n", path.c_str(), img.file.is_signed ? "signed" : "unsigned");
  std::printf("enclave size  %s (%llu KiB), %llu pages added, SSA frame %u page(s)\n",
              hex(l.size()).c_str(), static_cast<unsigned long long>(l.size() >> 10),
              static_cast<unsigned long long>(l.total_pages()), l.ssa_frame_pages());
  std::printf("entry         %s; ELF %zu bytes, %zu segments, %zu symbols, %zu relocations\n",
              hex(l.entry_offset()).c_str(), img.elf.bytes().size(), img.elf.segments().size(),
              img.elf.symbols().size(), img.elf.relocations().size());
  const sgx::Attributes a = l.attributes();
  std::printf("attributes    flags %s, xfrm %s, miscselect %s\n", hex(a.flags).c_str(),
              hex(a.xfrm).c_str(), hex(c.misc_select).c_str());
  std::printf("\nconfig\n");
  std::printf("  heap_size        %llu\n", static_cast<unsigned long long>(c.heap_size));
  std::printf("  stack_size       %llu\n", static_cast<unsigned long long>(c.stack_size));
  std::printf("  tcs_count        %u\n", c.tcs_count);
  std::printf("  ssa_frames       %u\n", c.ssa_frames);
  std::printf("  ssa_frame_pages  %u\n", c.ssa_frame_pages);
  std::printf("  debug            %s\n", c.debug ? "true" : "false");
  std::printf("  isv_prod_id      %u\n", c.isv_prod_id);
  std::printf("  isv_svn          %u\n", c.isv_svn);
  std::printf("  misc_select      %s\n", hex(c.misc_select).c_str());
  std::printf("  misc_mask        %s\n", hex(c.misc_mask).c_str());
  std::printf("  attributes       %s\n", hex(c.attributes).c_str());
  std::printf("  attributes_mask  %s\n", hex(c.attributes_mask).c_str());
  std::printf("  xfrm             %s\n", hex(c.xfrm).c_str());
  std::printf("  xfrm_mask        %s\n", hex(c.xfrm_mask).c_str());
  std::printf("  max_call_buffer  %llu\n", static_cast<unsigned long long>(c.max_call_buffer));
  for (const image::MountSpec& s : c.manifest.mounts) {
    std::printf("  mount            %s <- %s (%s)\n", s.path.c_str(), s.host.c_str(), image::mount_type_name(s.type));
  }
  if (!c.manifest.files.empty()) std::printf("  trusted files    %zu\n", c.manifest.files.size());
  std::printf("\nlayout (EADD order; guard pages are not added)\n");
  std::printf("  %-12s %-14s %8s  %-5s %-8s %s\n", "kind", "offset", "pages", "perms", "measured",
              "thread");
  for (const image::PageRange& r : l.ranges()) {
    const bool per_thread = r.kind == image::RangeKind::kTcs || r.kind == image::RangeKind::kSsa ||
                            r.kind == image::RangeKind::kStack || r.kind == image::RangeKind::kExceptionStack ||
                            r.kind == image::RangeKind::kThreadData;
    std::printf("  %-12s %-14s %8llu  %-5s %-8s %s\n", image::range_kind_name(r.kind),
                hex(r.offset).c_str(), static_cast<unsigned long long>(r.pages),
                perms(r.secinfo_flags).c_str(), r.measured ? "yes" : "no",
                per_thread ? std::to_string(r.thread).c_str() : "");
  }
  std::printf("\nmrenclave     %s\n", sgx::to_hex(l.measure()).c_str());
  if (img.file.is_signed) {
    const sgx::Sigstruct& s = img.file.sigstruct;
    std::printf("mrsigner      %s\n", sgx::to_hex(sgx::mrsigner_of(s)).c_str());
    std::printf("sigstruct     date %08x, isvprodid %u, isvsvn %u, enclavehash %s\n", s.date,
                s.isv_prod_id, s.isv_svn,
                sgx::to_hex(std::span<const uint8_t>(s.enclave_hash, 32)).c_str());
  } else {
    std::printf("mrsigner      unsigned\n");
  }
  return flush_stdout();
}

Status run_inspect(const InspectOptions& o) {
  TM_ASSIGN_OR_RETURN(image::LoadedImage img, image::load_image(o.image));
  if (!o.sigstruct_out.empty()) {
    if (!img.file.is_signed) {
      return invalid_argument(o.image + " is not signed: there is no SIGSTRUCT to write");
    }
    TM_RETURN_IF_ERROR(image::write_file_atomic(
        o.sigstruct_out,
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&img.file.sigstruct),
                                 sizeof(sgx::Sigstruct)),
        0644, true));
  }
  return o.json ? stream_json(o.image, img) : print_text(o.image, img);
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand("inspect", "Show an image's layout, config and identities (table or JSON)");
  cmd->add_option("IMAGE", o->image, "The image (.tme)")->required();
  cmd->add_flag("--json", o->json, "Print one JSON object instead of the table (large: every page)");
  cmd->add_option("--sigstruct", o->sigstruct_out,
                  "Also write the raw 1808-byte SIGSTRUCT to this file (signed images only)");
  cmd->footer(man_footer(
      "Show an image: its page layout in EADD order (kind, offset, pages, permissions, whether\n"
      "measured), its configuration, MRENCLAVE and MRSIGNER (or \"unsigned\").\n"
      "With --json, print ONE JSON object with \"mrenclave\" (hex), \"mrsigner\" (hex or null),\n"
      "\"size\" (bytes), \"ssaframesize\" (pages), \"pages\" (every added page in EADD order:\n"
      "{\"offset\", \"secinfo_flags\", \"measured\", \"data\": base64 of the 4096 bytes when\n"
      "measured}) and, for people, \"config\" and \"ranges\". That is everything needed to\n"
      "recompute MRENCLAVE with an independent tool (docs/enclave-image.md shows how).",
      "teemate inspect hello.tme\n"
      "teemate inspect --json hello.tme | jq -r .mrenclave\n"
      "teemate inspect --sigstruct hello.sig hello.tme"));
  cmd->callback([o] { report("inspect", run_inspect(*o)); });
}

}  // namespace teemate::cli
