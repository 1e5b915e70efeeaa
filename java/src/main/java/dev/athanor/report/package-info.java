/**
 * What a training run leaves for people to read: {@link dev.athanor.report.TrainLog} reads a run's JSON-lines log back,
 * {@link dev.athanor.report.TrainingCharts} draws its charts with XChart (PNG and SVG: loss raw and smoothed, learning
 * rate, gradient norm, tokens/s), and {@link dev.athanor.report.RunReport} writes one self-contained HTML page with the
 * charts, the configurations, the throughput, the memory per tier and the checkpoints. Nothing here prints; the
 * command line calls it after {@code train}.
 */
package dev.athanor.report;
