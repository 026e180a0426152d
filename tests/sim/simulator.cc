// run_simulation: one seeded run of the simulation (simulation.h; its parts in network.cc, faults.cc,
// workload.cc and checker.cc).
#include "simulator.h"

#include "simulation.h"

namespace fieldsync::sim {

using detail::Simulation;

SimReport run_simulation(const SimOptions& options) {
  Simulation sim(options);
  return sim.run();
}

}  // namespace fieldsync::sim
