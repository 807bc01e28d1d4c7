ALTER TABLE `clients` ADD `secret_expires_at` integer;--> statement-breakpoint
ALTER TABLE `clients` ADD `previous_secret_sealed` text;--> statement-breakpoint
ALTER TABLE `clients` ADD `previous_secret_expires_at` integer;--> statement-breakpoint
ALTER TABLE `clients` ADD `secret_in_use` text;--> statement-breakpoint
ALTER TABLE `clients` ADD `secret_in_use_at` integer;--> statement-breakpoint
ALTER TABLE `grants` ADD `refresh_expires_at` integer;--> statement-breakpoint
ALTER TABLE `grants` ADD `refresh_expires_reason` text;