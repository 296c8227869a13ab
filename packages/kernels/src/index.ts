export { createBackend, type BackendName, type CreateBackendOptions } from './create_backend.js';
