-- AlterTable
ALTER TABLE "users" ADD COLUMN     "password_hash" TEXT;
