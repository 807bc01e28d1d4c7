DROP INDEX "grants_state_next_refresh";--> statement-breakpoint
CREATE INDEX "grants_due" ON "grants" USING btree ("next_refresh_at","id");