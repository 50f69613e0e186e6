#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut (too slow for every CI run; BENCHMARKS.md has the scores).
#   bash scripts/mutation.sh                 -> every covered module, one after another
#   bash scripts/mutation.sh order crop      -> only these (names below)
# Each module is mutated alone in a scratch copy (build/mutation/NAME) and its mutants run only the tests
# that target it, on one worker (MUTATION_WORKERS to change). Needs requirements/mutation.txt installed.
# Prints each module's killed / survived / total; `cd build/mutation/NAME && mutmut show MUTANT` shows one.
# An entry may name several files, and may mutate only some of their functions (a 4th field): mutmut's names,
# globs matched with fnmatch: MODULE.x_FUNCTION* for a function, MODULE.x?CLASS?METHOD* for a method (mutmut
# joins them with a non-ASCII separator, which `?` matches); a package's __init__.py goes by the package's name.
# MUTATION_ONLY="GLOB ..." runs only those mutants of the named entry (e.g. the survivors of an earlier run,
# after tests were added); the printed figures then count those only.
set -euo pipefail -f
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${SEIT_PYTHON:-python}"
MUTMUT="$(cd "$(dirname "$(command -v "$PY")")" && pwd)/mutmut"  # absolute: mutmut runs in the scratch copy
WORKERS="${MUTATION_WORKERS:-1}"

# the engine's resume checks, not the whole trainer: which checkpoint a run may continue, and where
RESUME_CHECKS="seit.engine.train.x_run_state* seit.engine.train.x_restore_run_state* \
  seit.engine.train.x__check_resumable* seit.engine.train.x__normalise* seit.engine.train.x?Trainer?epoch_ends* \
  seit.engine.train.x?Trainer?reached_max_steps* seit.engine.pipeline.x?_Pipeline?steps_per_epoch* \
  seit.runtime.x_resume_checkpoint*"

# the figures every comparison quotes, not the confusion picture's layout (sizes, fonts, colours)
EVAL_FIGURES="seit.engine.evaluate.x?EvalResult?* seit.engine.evaluate.x?Accumulator?*"

# the hostile-file tests of the release readers (the rest of test_input_bounds.py trains models)
RELEASE_BOUNDS="tests/test_input_bounds.py::test_index_offsets_far_beyond_the_data_are_refused_before_any_read \
  tests/test_input_bounds.py::test_index_offsets_that_decrease_or_do_not_start_at_zero_are_refused \
  tests/test_input_bounds.py::test_a_gzip_bomb_index_is_refused_without_inflating_it \
  tests/test_input_bounds.py::test_a_token_file_longer_than_its_index_is_refused_without_inflating_all_of_it \
  tests/test_input_bounds.py::test_label_values_are_bounded_and_named \
  tests/test_input_bounds.py::test_a_label_file_far_larger_than_its_count_is_not_read"

# name | files to mutate | the tests that target them | [only these functions]
MODULES=(
  "order|src/seit/store/order.py|tests/test_store_order.py tests/test_store_sampler.py"
  "crop|src/seit/augment/crop.py|tests/test_augment_crop.py"
  "eda|src/seit/augment/eda.py|tests/test_augment_eda.py"
  "color|src/seit/augment/color.py|tests/test_augment_color.py"
  "mix|src/seit/augment/mix.py|tests/test_augment_mix.py"
  "format|src/seit/store/format.py|tests/test_store_format.py"
  "reader|src/seit/store/reader.py|tests/test_store_reader.py"
  "writer|src/seit/store/writer.py|tests/test_store_writer.py"
  # codec: the slow 32x32 round trips, the compression-ratio and the release-token tests are left out (CI runs them)
  "codec|src/seit/store/codec.py|tests/test_store_codec.py --deselect=tests/test_store_codec.py::test_ctx_codecs_beat_raw_and_plain_zstd_on_correlated_tokens --deselect=tests/test_store_codec.py::test_params_and_state_reload_to_the_same_codec[ctx --deselect=tests/test_store_codec.py::test_ctx_codec_roundtrips_the_reference_release_tokens --deselect=tests/test_store_codec.py::test_every_codec_roundtrips_any_grid_and_codebook[shape0 --deselect=tests/test_store_codec.py::test_every_codec_roundtrips_any_grid_and_codebook[shape1 --deselect=tests/test_store_codec.py::test_every_codec_roundtrips_any_grid_and_codebook[shape7"
  "release|src/seit/interop/seit_release.py|tests/test_interop_seit_release.py $RELEASE_BOUNDS"
  "pipeline|src/seit/augment/pipeline.py|tests/test_augment_pipeline.py"
  "zstdframes|src/seit/store/zstd_frames.py|tests/test_store_zstd_frames.py"
  "symbols|src/seit/store/symbols.py|tests/test_store_symbols.py"
  "anspages|src/seit/store/ans_pages.py|tests/test_store_ans_pages.py"
  "neighbour|src/seit/store/neighbour_model.py|tests/test_store_neighbour_model.py"
  "arrays|src/seit/store/arrays.py|tests/test_store_arrays.py"
  "edit|src/seit/store/edit.py|tests/test_store_edit.py"
  "shard|src/seit/store/shard.py|tests/test_store_shard.py"
  "files|src/seit/store/files.py|tests/test_store_files.py"
  "evaluate|src/seit/engine/evaluate.py|tests/test_engine_evaluate.py|$EVAL_FIGURES"
  "pixels|src/seit/engine/pixels.py|tests/test_engine_pixels.py"
  "stem|src/seit/models/stem.py|tests/test_models.py tests/test_models_grid.py"
  "layerdecay|src/seit/engine/layer_decay.py|tests/test_seitpp_models.py::test_layer_decay_groups_match_seitpp_s_param_groups_lrd tests/test_seitpp_models.py::test_layer_decay_scales_reach_the_optimizer_through_timm_s_scheduler tests/test_seitpp_models.py::test_layer_decay_groups_leave_out_frozen_parameters_and_need_blocks"
  "resume|src/seit/engine/train.py src/seit/engine/pipeline.py src/seit/runtime/__init__.py|tests/test_engine_resume.py tests/test_runtime.py::test_resume_auto_or_path|$RESUME_CHECKS"
)

selected=("$@")
for entry in "${MODULES[@]}"; do
  IFS='|' read -r name modules tests functions <<<"$entry"
  if [ ${#selected[@]} -gt 0 ] && [[ ! " ${selected[*]} " =~ " $name " ]]; then
    continue
  fi
  work="build/mutation/$name"
  rm -rf "$work" && mkdir -p "$work"
  cp -r src tests docs "$work"/  # docs: tests read the written spec (docs/store-format.md)
  {
    echo "[mutmut]"
    echo "source_paths = src"
    echo "only_mutate ="
    for m in $modules; do echo "    $m"; done
    echo "also_copy = docs"
    echo "pytest_add_cli_args_test_selection ="
    for t in $tests; do echo "    $t"; done
    echo
    echo "# pytest's settings here, or it finds the repository's pyproject.toml, whose pythonpath is the unmutated src"
    echo "[tool:pytest]"
    echo "markers = slow: end-to-end tests that take tens of seconds"
  } >"$work/setup.cfg"
  echo "== $name: $modules${functions:+ ($functions)} against $tests"
  functions="${MUTATION_ONLY:-$functions}"
  read -r -a only <<<"$functions"
  (cd "$work" && OMP_NUM_THREADS=1 SEIT_NO_PROGRESS=1 "$MUTMUT" run --max-children "$WORKERS" "${only[@]}" >run.log 2>&1) || {
    tail -20 "$work/run.log"
    exit 1
  }
  (cd "$work" && "$MUTMUT" results --all true >results.txt 2>&1 || true)
  "$PY" - "$work/results.txt" "$name" "${only[@]}" <<'PY'
import collections, fnmatch, sys
rows = [line.strip().rsplit(": ", 1) for line in open(sys.argv[1]) if ": " in line]
wanted = sys.argv[3:]
counts = collections.Counter(s for m, s in rows if not wanted or any(fnmatch.fnmatch(m, w) for w in wanted))
total = sum(counts.values())
killed = counts.get("killed", 0)
print(f"{sys.argv[2]}: {killed} killed / {total} mutants ({100 * killed / max(total, 1):.1f}%); {dict(counts)}")
PY
done
