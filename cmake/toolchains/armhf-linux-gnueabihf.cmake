# 32-bit ARM, hard float (handhelds): Debian's g++-arm-linux-gnueabihf (ARMv7-A, Thumb-2, VFPv3-D16). 32-bit
# size_t, long and pointers; Debian's armhf glibc 2.36 keeps a 32-bit time_t unless _TIME_BITS=64 (our code keeps
# time in int64_t milliseconds, never time_t). Usage: as aarch64-linux-gnu.cmake.
set(CMAKE_SYSTEM_PROCESSOR arm)
set(FIELDSYNC_CROSS_TRIPLET arm-linux-gnueabihf)
# GCC notes every std::vector iterator passed by value since the 7.1 ABI change (-Wpsabi): nothing here links
# code built by a GCC before 7.1.
set(CMAKE_CXX_FLAGS_INIT -Wno-psabi)
include(${CMAKE_CURRENT_LIST_DIR}/fieldsync-cross.cmake)
