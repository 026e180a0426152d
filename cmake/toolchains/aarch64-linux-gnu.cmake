# 64-bit ARM (phones): Debian's g++-aarch64-linux-gnu. Usage: scripts/cross-test.sh, or
# cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake -DFIELDSYNC_CLIENT_ONLY=ON ...
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(FIELDSYNC_CROSS_TRIPLET aarch64-linux-gnu)
include(${CMAKE_CURRENT_LIST_DIR}/fieldsync-cross.cmake)
