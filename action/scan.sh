#!/usr/bin/env bash
# The scan step of action.yml, runnable anywhere (tests/test_action.py runs it locally):
# reads INPUT_* variables, writes the JSON and HTML reports into INPUT_REPORT_DIR, records the
# exit code and report paths in $GITHUB_OUTPUT and the outcome in $GITHUB_STEP_SUMMARY (when
# set), and exits 0 so that the reports are uploaded before the action fails on the exit code.
# SCANNER overrides the command (default: scanner).
set -uo pipefail

: "${INPUT_MODEL:?INPUT_MODEL (the ONNX model) is required}"
: "${INPUT_PATHS:?INPUT_PATHS (the inputs to scan) is required}"
report_dir="${INPUT_REPORT_DIR:-scanner-reports}"
mkdir -p "$report_dir"
json="$report_dir/scan-report.json"
html="$report_dir/scan-report.html"

read -r -a scanner_cmd <<< "${SCANNER:-scanner}"
# one path per line (spaces kept); a line with *, ? or [ is a glob (** too), expanded here; a glob
# that matches nothing stays as it is, so the scan lists it as not found
paths=()
shopt -s globstar
while IFS= read -r line || [ -n "$line" ]; do
    line="${line#"${line%%[![:space:]]*}"}"; line="${line%"${line##*[![:space:]]}"}"  # trim
    [ -z "$line" ] && continue
    if [[ "$line" == *[*?[]* ]]; then
        mapfile -t matched < <(compgen -G "$line" | sort)
        if [ "${#matched[@]}" -gt 0 ]; then paths+=("${matched[@]}"); else paths+=("$line"); fi
    else
        paths+=("$line")
    fi
done <<< "$INPUT_PATHS"
[ "${#paths[@]}" -gt 0 ] || { echo "Error: INPUT_PATHS names no input" >&2; exit 2; }
read -r -a extra <<< "${INPUT_ARGS:-}"
args=(-q scan "$INPUT_MODEL" "${paths[@]}" -f json -o "$json" --html "$html")
[ -n "${INPUT_CALIBRATION:-}" ] && args+=(--calibration "$INPUT_CALIBRATION")
[ -n "${INPUT_MAX_FLAGGED:-}" ] && args+=(--max-flagged "$INPUT_MAX_FLAGGED")
[ -n "${INPUT_MAX_FLAGGED_RATE:-}" ] && args+=(--max-flagged-rate "$INPUT_MAX_FLAGGED_RATE")
[ -n "${INPUT_EXPECTED_FPR:-}" ] && args+=(--expected-fpr "$INPUT_EXPECTED_FPR")
[ "${INPUT_STRICT:-false}" = "true" ] && args+=(--strict)
[ "${INPUT_FAIL_ON_SUSPECT:-false}" = "true" ] && args+=(--fail-on-suspect)
[ "${INPUT_ALLOW_UNDECIDABLE:-false}" = "true" ] && args+=(--allow-undecidable)
args+=(--call-timeout "${INPUT_CALL_TIMEOUT:-auto}")
[ -n "${INPUT_TIMEOUT:-}" ] && args+=(--timeout "$INPUT_TIMEOUT")
args+=("${extra[@]}")

echo "+ ${scanner_cmd[*]} ${args[*]}"
log="$(mktemp)"
"${scanner_cmd[@]}" "${args[@]}" 2> >(tee "$log" >&2)
code=$?
wait  # the tee above has written everything

if [ -n "${GITHUB_OUTPUT:-}" ]; then
    { echo "exit-code=$code"; echo "json-report=$json"; echo "html-report=$html"; } >> "$GITHUB_OUTPUT"
fi
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    case $code in
        0) status="passed" ;; 1) status="gate failed" ;; 2) status="could not scan" ;; *) status="internal error" ;;
    esac
    {
        echo "### scanner: $status (exit $code)"
        echo
        sed 's/^/    /' "$log"
        echo
        echo "Reports: \`$json\`, \`$html\` (in the artifact)."
    } >> "$GITHUB_STEP_SUMMARY"
fi
rm -f "$log"
echo "scan exit code $code; reports in $report_dir"
if [ -z "${GITHUB_OUTPUT:-}" ]; then
    exit "$code"  # run by hand: the scan's own exit code
fi
exit 0
