CREATE TABLE `api_sessions` (
	`id_hash` text PRIMARY KEY NOT NULL,
	`api_key_id` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	FOREIGN KEY (`api_key_id`) REFERENCES `api_keys`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `api_sessions_expires_at` ON `api_sessions` (`expires_at`);--> statement-breakpoint
ALTER TABLE `api_keys` ADD `role` text DEFAULT 'reader' NOT NULL;--> statement-breakpoint
ALTER TABLE `clients` ADD `authorize_params` text;--> statement-breakpoint
ALTER TABLE `grants` ADD `lease_sent_at` integer;--> statement-breakpoint
-- Keys made before roles existed: an unlimited key could do everything, so it stays an admin key;
-- a key limited to some grants becomes a reader of those grants.
UPDATE `api_keys` SET `role` = 'admin' WHERE `grant_ids` IS NULL;
