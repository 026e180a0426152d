# The SQLite baseline as a plain library, and fieldsync-bench-load (the load generator, a plain executable, no
# Google Benchmark). Included from bench/CMakeLists.txt and from tests/CMakeLists.txt, whichever comes first,
# so the smoke test (tests/CMakeLists.txt) also exists in the sanitizer build, which does not build bench/.
if(TARGET fieldsync-bench-load)
  return()
endif()

add_library(fieldsync_bench_baseline STATIC ${CMAKE_CURRENT_LIST_DIR}/sqlite_baseline.cc)
target_include_directories(fieldsync_bench_baseline PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(fieldsync_bench_baseline PUBLIC SQLite::SQLite3)
fieldsync_warnings(fieldsync_bench_baseline)
if(NOT TARGET fieldsync_server)  # a client-only build (FIELDSYNC_CLIENT_ONLY): the baseline alone
  return()
endif()

# The PostgreSQL baseline (bare batched upsert) and scratch databases: fieldsync-bench-pg and the load
# generator's PostgreSQL mode (--postgres).
add_library(fieldsync_bench_pg_baseline STATIC ${CMAKE_CURRENT_LIST_DIR}/pg_baseline.cc)
target_include_directories(fieldsync_bench_pg_baseline PUBLIC ${CMAKE_CURRENT_LIST_DIR}
                                                       PRIVATE ${PROJECT_SOURCE_DIR}/server/src)  # pg.h (internal)
target_link_libraries(fieldsync_bench_pg_baseline PUBLIC fieldsync_pg)
fieldsync_warnings(fieldsync_bench_pg_baseline)

# N simulated reps over TLS WebSockets against a real fieldsync-server process, the bare transport (a Beast
# TLS WebSocket ack server in the same binary) and idle sessions. Figures: docs/PERFORMANCE.md.
add_executable(fieldsync-bench-load ${CMAKE_CURRENT_LIST_DIR}/load_bench.cc)
target_link_libraries(fieldsync-bench-load PRIVATE fieldsync_bench_baseline fieldsync_bench_pg_baseline fieldsync_server fieldsync_sync fieldsync_testsupport fieldsync_net
                                                   Boost::headers Boost::json OpenSSL::SSL Threads::Threads)
fieldsync_warnings(fieldsync-bench-load)
if(FIELDSYNC_SANITIZE)
  # There it only drives load_bench_smoke against the sanitized server: -O0 compiles it twice as fast
  # (78 s against 156 s).
  target_compile_options(fieldsync-bench-load PRIVATE -O0)
endif()
add_dependencies(fieldsync-bench-load fieldsync-server)
