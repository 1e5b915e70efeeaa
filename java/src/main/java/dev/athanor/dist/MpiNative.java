package dev.athanor.dist;

/**
 * Raw bindings to the MPI shim (native/dist/mpi_shim.cpp, registered by its JNI_OnLoad). Addresses are host memory
 * (a tensor's {@code address()}), counts are bytes unless the name says otherwise, and {@code comm} is a
 * communicator's Fortran handle ({@link #worldHandle0}, {@link #split0}). A failed MPI call throws {@link CommunicatorException}. Callers ({@link MpiCommunicator}) check
 * arguments first and serialize the calls (the shim initializes MPI with MPI_THREAD_SERIALIZED).
 */
final class MpiNative {
  private MpiNative() {}

  static native boolean initialized0();

  static native void init0();

  static native void finalize0();

  static native void abort0(int code);

  /** MPI_COMM_WORLD's handle. */
  static native int worldHandle0();

  static native int rank0(int comm);

  static native int size0(int comm);

  /** MPI_Comm_split of {@code comm} (collective over it); the child's handle, freed by {@link #free0}. */
  static native int split0(int comm, int color, int key);

  /** MPI_Comm_free. */
  static native void free0(int comm);

  static native String libraryVersion0();

  static native void barrier0(int comm);

  /** MPI_Allgatherv of bytes; {@code send == 0} means MPI_IN_PLACE (this rank's part already in {@code recv}). */
  static native void allgatherv0(int comm, long send, int sendBytes, long recv, int[] counts, int[] displs);

  static native void alltoallv0(int comm, long send, int[] sendCounts, int[] sendDispls, long recv, int[] recvCounts, int[] recvDispls);

  static native void bcast0(int comm, long addr, int bytes, int root);

  static native void send0(int comm, long addr, int bytes, int dest, int tag);

  static native void recv0(int comm, long addr, int bytes, int src, int tag);

  /** In-place MPI_Allreduce sum of {@code count} elements of dtype code {@code dtype} (F32 or I32). */
  static native void allreduceSum0(int comm, long addr, int count, int dtype);

  /** MPI_Reduce_scatter_block sum, {@code countPerRank} elements per rank (F32 or I32). */
  static native void reduceScatterSum0(int comm, long send, long recv, int countPerRank, int dtype);
}
