-- Every run's metrics over time, per model (sampled, deterministic and oracle entries), instruction
-- set and metric.
SELECT r.timestamp, s.run_id, s.entry, s.model, s.mode, s.instruction_set, s.metric, s.value, s.ci_low, s.ci_high
FROM eval_summary s JOIN eval_runs r USING (run_id)
WHERE s.mode <> 'text_probe'
ORDER BY s.entry, s.instruction_set, s.metric, r.timestamp
