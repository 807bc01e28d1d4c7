ALTER TABLE `grants` ADD `kind` text DEFAULT 'authorization_code' NOT NULL;--> statement-breakpoint
ALTER TABLE `grants` ADD `token_request` text;