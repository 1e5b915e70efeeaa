/**
 * Communication between the processes of a distributed run: a {@link dev.athanor.dist.Communicator} (all-reduce,
 * reduce-scatter, all-gather, broadcast, send/recv, barrier on host tensors) over MPI, loaded at run time through our
 * small shim library (libathanor_mpi, built when CMake finds MPI), or within one process; and data parallelism on top
 * of it ({@link dev.athanor.dist.DataParallel}, the trainer's gradient reducer).
 *
 * <p>Deterministic mode ({@link dev.athanor.dist.ReduceMode#DETERMINISTIC}, the default on the CPU): MPI does not
 * promise an order for its sums, so the float sums are formed by our own kernels in rank order 0, 1, 2, ... from raw
 * bytes exchanged with MPI (all-to-all, then all-gather), and every rank gets identical bits. {@link
 * dev.athanor.dist.ReduceMode#FAST} uses MPI's own reductions where MPI has the type (F32, I32).
 *
 * <p>NCCL (CUDA tensors) is the next implementation of {@link dev.athanor.dist.Communicator}, bootstrapped over MPI;
 * the collectives here take host tensors only.
 */
package dev.athanor.dist;
