#include "fieldsync/sync/protocol.h"

namespace fieldsync::protocol {

const char* message_name(const Message& m) {
  static constexpr const char* kNames[] = {"Hello",       "Welcome",     "PushTxns",         "PushAck",
                                           "PullRequest", "ChangeBatch", "BootstrapRequest", "BootstrapPage",
                                           "Error"};
  static_assert(std::size(kNames) == std::variant_size_v<Message>);
  return kNames[m.index()];
}

}  // namespace fieldsync::protocol
