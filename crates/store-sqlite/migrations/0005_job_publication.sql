-- When the broker (RabbitMQ) confirmed a job's last message, in microseconds: the job row is
-- its own outbox, so a job and its message cannot diverge. Unused without a broker.
ALTER TABLE memory_generation_jobs ADD COLUMN published_at INTEGER;

-- The W3C trace context of the request that queued the job (JSON object), so the worker's
-- spans join the request's trace.
ALTER TABLE memory_generation_jobs ADD COLUMN trace_context TEXT;
