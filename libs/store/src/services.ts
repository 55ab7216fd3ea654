import { NatsConnection } from "@moeq/bus";
import type { Dtype, TensorDescriptor } from "@moeq/contracts";
import { Context, Effect, Layer } from "effect";
import { ChecksumMismatch, DescriptorRejected, StoreFailed } from "./errors.ts";
import {
  type Allocation,
  type Opened,
  type PutOptions,
  RunTensorStore,
  type StoreOptions,
  type Tensor,
} from "./tensor-store.ts";

type StoreError = DescriptorRejected | ChecksumMismatch | StoreFailed;

const typed =
  (operation: string) =>
  (e: unknown): StoreError => {
    if (e instanceof DescriptorRejected || e instanceof ChecksumMismatch || e instanceof StoreFailed) return e;
    return new StoreFailed({ operation, message: `${operation}: ${(e as Error)?.message ?? String(e)}` });
  };
const attempt = <A>(operation: string, f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: typed(operation) });

export interface TensorStoreShape {
  readonly client: RunTensorStore;
  put(t: Tensor, o?: PutOptions): Effect.Effect<TensorDescriptor, StoreError>;
  allocate(
    dtype: Dtype,
    shape: ReadonlyArray<number>,
    o?: { consumers?: number },
  ): Effect.Effect<Allocation, StoreError>;
  open(d: TensorDescriptor, o?: { verify?: boolean; source?: string }): Effect.Effect<Opened, StoreError>;
}

/** The run's tensor store; the run's segments are removed when the layer's scope closes if `owner`. */
export class TensorStore extends Context.Service<TensorStore, TensorStoreShape>()("@moeq/store/TensorStore") {
  static layer(o: StoreOptions) {
    return Layer.effect(
      TensorStore,
      Effect.gen(function* () {
        const bus = yield* NatsConnection;
        const client = yield* Effect.acquireRelease(
          attempt("open store", () => RunTensorStore.open(bus, o)),
          (s) => (o.owner ? Effect.promise(() => s.endRun()) : Effect.void),
        );
        return {
          client,
          put: (t, po) => attempt("put", () => client.put(t, po)),
          allocate: (dtype, shape, ao) => attempt("allocate", () => client.allocate(dtype, shape, ao)),
          open: (d, oo) => attempt("open", () => client.open(d, oo)),
        } satisfies TensorStoreShape;
      }),
    );
  }
}
