# Sourced by the data-parallel benchmarks (run-cpu-dp.sh, run-cpu-zero-memory.sh) from the repository root, with
# $out a fresh directory and $corpus the corpus argument (empty: use the JDK's sources): sets $corpus, $java and $jar
# and exports what Open MPI needs to run as root in a container.
if [[ -z "$corpus" ]]; then  # about 5.7 MB of the JDK's own java.util sources
  corpus=$out/corpus.txt
  unzip -q -o "$(./athanor java-home)/lib/src.zip" 'java.base/java/util/*' -d "$out/src"
  find "$out/src" -name '*.java' | sort | head -200 | xargs cat > "$corpus"
fi
java="$(./athanor java-home)/bin/java"
jar=java/target/athanor-0.1.0.jar
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
