# Shared body of the cross toolchain files (aarch64-linux-gnu.cmake, armhf-linux-gnueabihf.cmake): Debian's cross
# compiler for FIELDSYNC_CROSS_TRIPLET, its libc under /usr/<triplet>, and the target's libraries unpacked by
# scripts/cross-sysroot.sh into $FIELDSYNC_CROSS_ROOT/<triplet> (default /opt/fieldsync-cross). Tests and test
# discovery run through scripts/qemu-run.sh (qemu-user), so ctest works in the cross build as in a native one.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${FIELDSYNC_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${FIELDSYNC_CROSS_TRIPLET}-g++)

if(DEFINED ENV{FIELDSYNC_CROSS_ROOT})
  set(FIELDSYNC_CROSS_ROOT $ENV{FIELDSYNC_CROSS_ROOT})
elseif(NOT FIELDSYNC_CROSS_ROOT)
  set(FIELDSYNC_CROSS_ROOT /opt/fieldsync-cross)
endif()
set(FIELDSYNC_CROSS_SYSROOT ${FIELDSYNC_CROSS_ROOT}/${FIELDSYNC_CROSS_TRIPLET})
if(NOT EXISTS ${FIELDSYNC_CROSS_SYSROOT}/.stamp)
  message(FATAL_ERROR "no target libraries in ${FIELDSYNC_CROSS_SYSROOT}: run scripts/install-deps.sh "
                      "(or scripts/cross-sysroot.sh ${FIELDSYNC_CROSS_TRIPLET})")
endif()
# try_compile projects re-read this file without the cache: hand them the two variables.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES FIELDSYNC_CROSS_TRIPLET FIELDSYNC_CROSS_ROOT)

# Libraries, headers and CMake packages only from the target's trees; programs (flatc, ccache) from the host.
set(CMAKE_FIND_ROOT_PATH ${FIELDSYNC_CROSS_SYSROOT} /usr/${FIELDSYNC_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_LIBRARY_ARCHITECTURE ${FIELDSYNC_CROSS_TRIPLET})
# The unpacked tree is not the compiler's sysroot: its Debian multiarch include directory (OpenSSL's
# configuration.h) and library directories are named explicitly. -rpath-link lets the linker follow the shared
# libraries' own dependencies (libboost_json -> libboost_container) inside it.
set(_fs_libdir ${FIELDSYNC_CROSS_SYSROOT}/usr/lib/${FIELDSYNC_CROSS_TRIPLET})
include_directories(SYSTEM ${FIELDSYNC_CROSS_SYSROOT}/usr/include/${FIELDSYNC_CROSS_TRIPLET}
                    ${FIELDSYNC_CROSS_SYSROOT}/usr/include)
set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_fs_libdir}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_fs_libdir}")

# Test executables (and gtest_discover_tests) run under qemu-user with the target's loader and libraries.
get_filename_component(_fs_repo ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)
set(CMAKE_CROSSCOMPILING_EMULATOR ${_fs_repo}/scripts/qemu-run.sh;${FIELDSYNC_CROSS_TRIPLET})
