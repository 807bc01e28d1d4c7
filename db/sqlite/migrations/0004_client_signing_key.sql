ALTER TABLE `clients` ADD `private_key_sealed` text;--> statement-breakpoint
ALTER TABLE `clients` ADD `signing_key` text;