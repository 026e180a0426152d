// libFuzzer target: any byte string given to codec::decode must yield a message or a typed error, never a
// crash, an out-of-bounds read (ASan) or undefined behaviour (UBSan). A decoded message must re-encode,
// decode again, and re-encode to the same bytes (bytes, not values: a NaN coordinate is not equal to itself).
#include <cstdint>
#include <cstdlib>

#include "fieldsync/sync/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fieldsync;
  Result<protocol::Message> m = codec::decode({data, size});
  if (!m.is_ok()) return 0;
  std::vector<uint8_t> again = codec::encode(m.value());
  Result<protocol::Message> m2 = codec::decode(again);
  if (!m2.is_ok() || codec::encode(m2.value()) != again) std::abort();
  return 0;
}
