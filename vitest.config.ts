import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: ["native", "libs/*", "stages/*", "test"],
  },
});
