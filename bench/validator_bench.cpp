// Prints what validating a payload costs: ns per PayloadValidator::validate()
// (summary_only and trajectories) and per parse alone, for a v1, a v3 and
// the largest v4 recorded payload, and Boost.JSON's own parse into a
// monotonic_resource for scale. Figures only, no assertions.
//
//   build/release/bench/validator_bench [fixtures-dir]
#include "json_tree.hpp"
#include "payload_validator.hpp"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory_resource>
#include <sstream>
#include <string>

namespace {

constexpr std::int64_t kNow = 1796083200;  // 2026-12-01T00:00:00Z

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Nanoseconds per call of `fn`: the batch size doubles until a batch takes
// 2 ms, then the best of 51 batches counts. Short batches and the minimum
// keep the figure meaningful on a machine shared with other work.
double ns_per_call(const std::function<std::int64_t()>& fn) {
  using clock = std::chrono::steady_clock;
  volatile std::int64_t sink = 0;
  std::int64_t batch = 1;
  for (;;) {
    const auto start = clock::now();
    for (std::int64_t i = 0; i < batch; ++i) sink = sink + fn();
    if (clock::now() - start > std::chrono::milliseconds(2)) break;
    batch *= 2;
  }
  double best = 1e300;
  for (int round = 0; round < 51; ++round) {
    const auto start = clock::now();
    for (std::int64_t i = 0; i < batch; ++i) sink = sink + fn();
    const std::chrono::duration<double, std::nano> took = clock::now() - start;
    best = std::min(best, took.count() / static_cast<double>(batch));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : LGR_FIXTURES_DIR;
  const std::array<const char*, 3> files = {"v1-0.1.0-diverged.json",
                                            "v3-0.1.9-converged.json",
                                            "v4-0.6.4-in_progress-2.json"};

  lgr::ValidatorOptions summary_options;
  lgr::ValidatorOptions trajectory_options;
  trajectory_options.policy = lgr::PrivacyPolicy::trajectories;
  const lgr::PayloadValidator summary(summary_options);
  const lgr::PayloadValidator trajectories(trajectory_options);

  std::printf("%-30s %7s %12s %12s %12s %12s\n", "ns per call", "bytes",
              "validate", "validate", "parse only", "boost::json");
  std::printf("%-30s %7s %12s %12s %12s %12s\n", "", "", "summary_only",
              "trajectories", "(ours)", "::parse");

  for (const char* file : files) {
    const std::string body = read_file(dir + "/" + file);
    if (body.empty() || !summary.validate(body, kNow)) {
      std::fprintf(stderr, "cannot use %s/%s\n", dir.c_str(), file);
      return 1;
    }

    const double v_summary = ns_per_call(
        [&] { return summary.validate(body, kNow)->event.iterations_used; });
    const double v_traj = ns_per_call([&] {
      return trajectories.validate(body, kNow)->event.iterations_used;
    });
    const double parse = ns_per_call([&] {
      alignas(std::max_align_t) static std::byte buf[64 * 1024];
      std::pmr::monotonic_buffer_resource arena(buf, sizeof buf);
      return static_cast<std::int64_t>(
          (*lgr::json::parse_json_tree(body, arena))->size);
    });
    const double boost_parse = ns_per_call([&] {
      alignas(std::max_align_t) static unsigned char buf[64 * 1024];
      boost::json::monotonic_resource mr(buf, sizeof buf);
      return static_cast<std::int64_t>(
          boost::json::parse(body, &mr).as_object().size());
    });

    std::printf("%-30s %7zu %12.0f %12.0f %12.0f %12.0f\n", file, body.size(),
                v_summary, v_traj, parse, boost_parse);
  }
  return 0;
}
