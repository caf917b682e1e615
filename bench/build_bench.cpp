// teemate-bench-build: enclave build time (Enclave::load) of 16/64/256 MiB
// enclaves, also broken into phases through the image and backend interfaces.
// A benchmark, not a test: never registered with CTest, never writes a file.
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "host/backend/backend.h"
#include "host/image/image_file.h"
#include "host/image/layout.h"
#include "host/runtime/image_loader.h"
#include "sgx/arch.h"
#include "teemate/enclave.h"

namespace teemate::bench {
namespace {

constexpr const char* kUsage =
    "usage: teemate-bench-build [--quick] [--reps N] [--json] [--enclave-dir DIR]\n"
    "\n"
    "Measures enclave build time on the sim backend for the bench images of 16,\n"
    "64 and 256 MiB (bench_build_16m.tme, bench_build_64m.tme, bench_build_256m.tme)\n"
    "and prints a table, then one JSON object per row (median, min, max, p10, p90\n"
    "over repetitions, milliseconds).\n"
    "\n"
    "cases, per enclave size:\n"
    "  load          Enclave::load: read + parse + ECREATE + EADD/EEXTEND + EINIT\n"
    "  unload        destroying the loaded enclave\n"
    "  read_parse    image::load_image: read the file, parse ELF and config, layout\n"
    "  ecreate       open the backend and create the enclave (memfd, mappings)\n"
    "  eadd_eextend  every page: produce its content, copy it in, hash it\n"
    "  einit         finish the measurement, check the SIGSTRUCT, set permissions\n"
    "  phases_sum    read_parse + ecreate + eadd_eextend + einit, per repetition\n"
    "  measure_only  Layout::measure(): MRENCLAVE without building (hashing only)\n"
    "  memfd_fill    no enclave: copy as many 4 KiB pages into a fresh memfd mapping\n"
    "                (the commit-and-copy half of EADD without the hashing)\n"
    "MiB/s is the size of the added pages divided by the median time.\n"
    "\n"
    "options:\n"
    "  --quick            5 repetitions per size (well under a minute)\n"
    "  --reps N           repetitions per size (default 20 for 16/64 MiB, 10 for 256 MiB)\n"
    "  --json             print only the JSON lines\n"
    "  --enclave-dir DIR  where the bench_build_*.tme images are\n"
    "                     (default: <dir of this program>/../enclaves)\n"
    "  --help             this text\n";

struct Samples {
  std::vector<double> load, unload, read_parse, ecreate, eadd, einit, sum, measure, fill;
};

// Copies `pages` non-zero pages into a fresh memfd of `size` bytes mapped
// MAP_SHARED, as sim's EADD does; returns the copy time in ms (< 0: error).
double memfd_fill_ms(uint64_t size, uint64_t pages) {
  const int fd = memfd_create("teemate-bench-fill", MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    close(fd);
    return -1;
  }
  void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    close(fd);
    return -1;
  }
  static uint8_t page[4096];
  memset(page, 0x5a, sizeof page);
  auto* dst = static_cast<uint8_t*>(m);
  const auto t = Clock::now();
  for (uint64_t i = 0; i < pages; ++i) memcpy(dst + i * sizeof page, page, sizeof page);
  const double ms = seconds_between(t, Clock::now()) * 1e3;
  munmap(m, size);
  close(fd);
  return ms;
}

double ms_since(Clock::time_point t0) { return seconds_between(t0, Clock::now()) * 1e3; }

// The loader's build sequence (src/host/runtime/enclave.cpp) with a clock
// around each phase.
Status phased_build(const std::string& path, Samples* s) {
  auto t = Clock::now();
  auto loaded = image::load_image(path);
  if (!loaded.ok()) return loaded.status();
  const image::Layout& layout = loaded->layout;
  const double read_parse = ms_since(t);

  t = Clock::now();
  auto backend = host::open_backend("sim");
  if (!backend.ok()) return backend.status();
  auto enclave = (*backend)->create(host::create_params_for(layout));
  if (!enclave.ok()) return enclave.status();
  const double ecreate = ms_since(t);

  t = Clock::now();
  if (Status added = host::add_image_pages(**enclave, layout); !added.ok()) return added;
  const double eadd = ms_since(t);

  t = Clock::now();
  Status st = (*enclave)->init(loaded->file.sigstruct);
  if (!st.ok()) return st;
  const double einit = ms_since(t);

  s->read_parse.push_back(read_parse);
  s->ecreate.push_back(ecreate);
  s->eadd.push_back(eadd);
  s->einit.push_back(einit);
  s->sum.push_back(read_parse + ecreate + eadd + einit);
  return {};
}

Row make_row(const std::string& name, uint64_t size_mib, std::vector<double> samples, double added_mib,
             bool rate, std::string note = "") {
  Row r;
  r.bench = "build";
  r.name = name;
  r.unit = "ms";
  r.stats = summarize(std::move(samples));
  r.numbers.push_back({"size_mib", std::to_string(size_mib)});
  r.numbers.push_back({"added_mib", fmt(added_mib, 2)});
  if (rate && r.stats.median > 0) {
    const double mibs = added_mib / (r.stats.median / 1e3);
    r.numbers.push_back({"mib_per_s", fmt(mibs, 1)});
    note = fmt(mibs, 1) + " MiB/s" + (note.empty() ? "" : "; " + note);
  }
  r.note = std::move(note);
  return r;
}

int run(const Options& o) {
  const std::string dir = enclave_dir(o);
  const uint64_t sizes[] = {16, 64, 256};
  for (uint64_t mib : sizes) {
    const std::string p = dir + "/bench_build_" + std::to_string(mib) + "m.tme";
    if (!file_exists(p)) {
      fprintf(stderr, "teemate-bench-build: %s not found (build the bench enclaves, or pass --enclave-dir)\n",
              p.c_str());
      return 1;
    }
  }
  std::vector<Row> rows;
  for (uint64_t mib : sizes) {
    const std::string path = dir + "/bench_build_" + std::to_string(mib) + "m.tme";
    const int reps = o.reps > 0 ? o.reps : (o.quick ? 5 : (mib >= 256 ? 10 : 20));

    auto probe = image::load_image(path);
    if (!probe.ok()) {
      fprintf(stderr, "teemate-bench-build: %s\n", probe.status().to_string().c_str());
      return 1;
    }
    const uint64_t size = probe->layout.size();
    if (size != (mib << 20)) {
      fprintf(stderr, "teemate-bench-build: %s: enclave size is %llu bytes, expected %llu MiB\n", path.c_str(),
              static_cast<unsigned long long>(size), static_cast<unsigned long long>(mib));
      return 1;
    }
    const uint64_t pages = probe->layout.total_pages();
    const double added_mib = static_cast<double>(pages * sgx::kPageSize) / (1 << 20);

    // Warm-up: one full load (page cache, allocator, signal handlers).
    {
      auto e = Enclave::load(path);
      if (!e.ok()) {
        fprintf(stderr, "teemate-bench-build: %s\n", e.status().to_string().c_str());
        return 1;
      }
    }
    Samples s;
    for (int r = 0; r < reps; ++r) {
      auto t = Clock::now();
      auto e = Enclave::load(path);
      if (!e.ok()) {
        fprintf(stderr, "teemate-bench-build: %s\n", e.status().to_string().c_str());
        return 1;
      }
      s.load.push_back(ms_since(t));
      std::unique_ptr<Enclave> enclave = std::move(e).value();
      t = Clock::now();
      enclave.reset();
      s.unload.push_back(ms_since(t));

      if (Status st = phased_build(path, &s); !st.ok()) {
        fprintf(stderr, "teemate-bench-build: %s\n", st.to_string().c_str());
        return 1;
      }

      t = Clock::now();
      const sgx::Digest d = probe->layout.measure();
      s.measure.push_back(ms_since(t));
      const double fill = memfd_fill_ms(size, pages);
      if (fill < 0) {
        perror("teemate-bench-build: memfd fill");
        return 1;
      }
      s.fill.push_back(fill);
      if (r == 0) {
        if (Status st = image::check_image_signature(*probe, d); !st.ok()) {
          fprintf(stderr, "teemate-bench-build: measure() disagrees with the image: %s\n", st.to_string().c_str());
          return 1;
        }
      }
    }
    const std::string note = std::to_string(pages) + " pages";
    rows.push_back(make_row("load_" + std::to_string(mib) + "m", mib, std::move(s.load), added_mib, true, note));
    rows.push_back(make_row("unload_" + std::to_string(mib) + "m", mib, std::move(s.unload), added_mib, false));
    rows.push_back(make_row("read_parse_" + std::to_string(mib) + "m", mib, std::move(s.read_parse), added_mib, false));
    rows.push_back(make_row("ecreate_" + std::to_string(mib) + "m", mib, std::move(s.ecreate), added_mib, false));
    rows.push_back(make_row("eadd_eextend_" + std::to_string(mib) + "m", mib, std::move(s.eadd), added_mib, true));
    rows.push_back(make_row("einit_" + std::to_string(mib) + "m", mib, std::move(s.einit), added_mib, false));
    rows.push_back(make_row("phases_sum_" + std::to_string(mib) + "m", mib, std::move(s.sum), added_mib, true));
    rows.push_back(make_row("measure_only_" + std::to_string(mib) + "m", mib, std::move(s.measure), added_mib, true,
                            "hash only, no copy"));
    rows.push_back(make_row("memfd_fill_" + std::to_string(mib) + "m", mib, std::move(s.fill), added_mib, true,
                            "copy into fresh memfd only, no enclave"));
  }
  if (!o.json_only) {
    printf("teemate-bench-build%s: backend sim, milliseconds; MiB/s = added pages / median\n\n",
           o.quick ? " --quick" : "");
  }
  print_rows(rows, o, 3);
  return 0;
}

}  // namespace
}  // namespace teemate::bench

int main(int argc, char** argv) {
  teemate::bench::Options o;
  std::string error;
  if (!teemate::bench::parse_options(argc, argv, &o, &error)) {
    fprintf(stderr, "teemate-bench-build: %s\n", error.c_str());
    return 2;
  }
  if (o.help) {
    fputs(teemate::bench::kUsage, stdout);
    return 0;
  }
  return teemate::bench::run(o);
}
