// fieldsync-admin: see admin_usage() in admin.cc, or run with --help.
#include <iostream>
#include <string>
#include <vector>

#include "fieldsync/server/admin.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return fieldsync::server::run_admin(args, std::cin, std::cout, std::cerr);
}
