package dev.athanor.dist;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;

/**
 * Run by {@link MpiRunTest} under mpirun: after a first all-reduce, the last rank kills itself with SIGKILL while the
 * others keep all-reducing (so they wait for it). The job must end with an error naming the lost rank, not hang.
 */
public final class DieMain {
  public static void main(String[] args) throws Exception {
    try (Communicator c = Communicator.mpi(ReduceMode.DETERMINISTIC); Tensor t = Tensor.zeros(DType.F32, Device.CPU, 1000)) {
      c.allReduceSum(t);
      System.out.println("rank " + c.rank() + " of " + c.size() + ": first all-reduce done");
      System.out.flush();
      if (c.rank() == c.size() - 1) {
        new ProcessBuilder("kill", "-9", Long.toString(ProcessHandle.current().pid())).inheritIO().start().waitFor();
        Thread.sleep(60_000);  // not reached
      }
      for (int i = 0; ; i++) c.allReduceSum(t);  // waits for the dead rank
    }
  }
}
