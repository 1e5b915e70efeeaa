/**
 * The automatic parallel planner ({@code --parallel auto}): given the processes, the model, the batch and a memory
 * budget per process, it scores every data × tensor × pipeline × ZeRO layout Athanor can run with a cost model
 * (memory per rank, bytes communicated per step, pipeline bubble, measured compute and link speeds), picks the fastest
 * layout that fits, and explains the choice with the numbers and the runners-up.
 */
package dev.athanor.dist.plan;
