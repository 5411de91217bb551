-- Plus module `llm_trace` (seed 001 §5.5): prompt hash, data snapshot key and model
-- version/parameters for reproducible decisions.
ALTER TABLE brain.llm_prompts
    ADD COLUMN IF NOT EXISTS prompt_hash VARCHAR(64);
ALTER TABLE brain.llm_responses
    ADD COLUMN IF NOT EXISTS data_snapshot_key VARCHAR(128);
ALTER TABLE brain.llm_insights
    ADD COLUMN IF NOT EXISTS model_version VARCHAR(50);
ALTER TABLE brain.decision_logs
    ADD COLUMN IF NOT EXISTS prompt_hash VARCHAR(64),
    ADD COLUMN IF NOT EXISTS data_snapshot_key VARCHAR(128),
    ADD COLUMN IF NOT EXISTS model_name VARCHAR(100),
    ADD COLUMN IF NOT EXISTS model_version VARCHAR(50),
    ADD COLUMN IF NOT EXISTS parameters JSONB;
CREATE INDEX IF NOT EXISTS idx_llm_prompts_hash ON brain.llm_prompts (prompt_hash) WHERE prompt_hash IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_decision_logs_prompt_hash ON brain.decision_logs (prompt_hash) WHERE prompt_hash IS NOT NULL;
