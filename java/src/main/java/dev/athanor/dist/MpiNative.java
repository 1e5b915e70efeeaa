package dev.athanor.dist;

/**
 * Raw bindings to the MPI shim (native/dist/mpi_shim.cpp, registered by its JNI_OnLoad). Addresses are host memory
 * (a tensor's {@code address()}), counts are bytes unless the name says otherwise, and every call takes the handle of
 * its communicator first ({@link #WORLD}, or one made by {@link #split0}). A failed MPI call throws {@link CommunicatorException}. Callers ({@link MpiCommunicator}) check
 * arguments first and serialize the calls (the shim initializes MPI with MPI_THREAD_SERIALIZED).
 */
final class MpiNative {
  private MpiNative() {}

  /** The handle of MPI_COMM_WORLD. */
  static final int WORLD = 0;

  static native boolean initialized0();

  static native void init0();

  static native void finalize0();

  static native void abort0(int code);

  static native int rank0(int comm);

  static native int size0(int comm);

  static native String libraryVersion0();

  static native void barrier0(int comm);

  /** MPI_Comm_split of {@code parent} (collective over it): the handle of this rank's new communicator. */
  static native int split0(int parent, int color, int key);

  /** MPI_Comm_free of a communicator made by {@link #split0} (collective over it). */
  static native void free0(int comm);

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
