// One libFuzzer executable per target: FIELDSYNC_FUZZ_TARGET names the function of targets.h it runs.
#include <cstddef>
#include <cstdint>

#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fieldsync::fuzz::FIELDSYNC_FUZZ_TARGET(data, size);
}
