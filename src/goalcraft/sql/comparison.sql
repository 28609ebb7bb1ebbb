-- The latest run's metrics, one row per instruction set and metric, every model side by side
-- (deterministic mode): <model>_value with its 95% bootstrap CI <model>_ci_low, <model>_ci_high.
WITH latest AS (SELECT run_id FROM eval_runs ORDER BY timestamp DESC, run_id DESC LIMIT 1)
PIVOT (SELECT s.instruction_set, s.metric, s.model, s.value, s.ci_low, s.ci_high
       FROM eval_summary s JOIN latest USING (run_id) WHERE s.mode = 'deterministic')
ON model
USING first(value) AS value, first(ci_low) AS ci_low, first(ci_high) AS ci_high
GROUP BY instruction_set, metric
ORDER BY instruction_set, metric
