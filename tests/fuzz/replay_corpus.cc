// The committed seed corpus (and every crash found, minimised, added to it) replayed through the fuzz
// targets' bodies: an ordinary test, so every build checks it, without clang. Usage: replay_corpus <corpus
// dir> (holding one directory per target, tests/fuzz/corpus). Fails on a missing or empty target directory.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "targets.h"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (argc != 2) {
    std::fprintf(stderr, "usage: replay_corpus <corpus dir>\n");
    return 2;
  }
  int failures = 0;
  std::vector<fieldsync::fuzz::Target> targets(std::begin(fieldsync::fuzz::kTargets),
                                               std::end(fieldsync::fuzz::kTargets));
#ifdef FIELDSYNC_FUZZ_API
  targets.insert(targets.end(), std::begin(fieldsync::fuzz::kApiTargets),
                 std::end(fieldsync::fuzz::kApiTargets));
#endif
  for (const fieldsync::fuzz::Target& target : targets) {
    const fs::path dir = fs::path(argv[1]) / std::string(target.name);
    size_t files = 0;
    std::error_code ec;
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                       std::istreambuf_iterator<char>());
      target.run(bytes.data(), bytes.size());  // a crash or an abort fails the test
      ++files;
    }
    std::printf("%s: %zu inputs\n", std::string(target.name).c_str(), files);
    if (ec || files == 0) {
      std::fprintf(stderr, "%s: no corpus in %s\n", std::string(target.name).c_str(), dir.c_str());
      ++failures;
    }
  }
  return failures == 0 ? 0 : 1;
}
