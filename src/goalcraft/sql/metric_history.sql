-- Every run's deterministic metrics over time, per model, instruction set and metric.
SELECT r.timestamp, s.run_id, s.model, s.instruction_set, s.metric, s.value, s.ci_low, s.ci_high
FROM eval_summary s JOIN eval_runs r USING (run_id)
WHERE s.mode = 'deterministic'
ORDER BY s.model, s.instruction_set, s.metric, r.timestamp
