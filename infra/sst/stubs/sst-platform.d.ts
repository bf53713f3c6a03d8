// Stand-ins for the types `sst install` generates into .sst/platform, so the tests can
// type-check sst.config.ts with the TypeScript compiler alone, offline and without SST's
// platform binaries. They mirror the shapes of the SST v3 (and Pulumi) APIs sst.config.ts uses,
// as far as they are known here, and nothing more: they are not SST's own declarations, and
// a real `sst deploy` remains the only proof that the config is accepted. Used only through
// tsconfig.stubs.json; a real SST project never includes this file.

declare namespace $util {
  interface Output<T> {
    apply<U>(fn: (value: T) => Input<U>): Output<U>;
  }
  type Input<T> = T | Promise<T> | Output<T>;
  function output<T>(value: Input<T>): Output<T>;
  function interpolate(strings: TemplateStringsArray, ...values: Input<unknown>[]): Output<string>;
  function all<T extends unknown[]>(values: [...{ [K in keyof T]: Input<T[K]> }]): Output<T>;
}

declare const $interpolate: typeof $util.interpolate;
declare const $resolve: typeof $util.all;
declare const $dev: boolean;
declare const $app: Readonly<{
  name: string;
  stage: string;
  removal: "remove" | "retain" | "retain-all";
}>;

interface SstAppInput {
  stage: string;
}
interface SstApp {
  name: string;
  removal?: "remove" | "retain" | "retain-all";
  protect?: boolean;
  home: "aws" | "cloudflare" | "local";
  providers?: Record<string, unknown>;
}
interface SstConfig {
  app(input: SstAppInput): SstApp;
  run(): Promise<Record<string, $util.Input<unknown>> | void>;
}
declare function $config(config: SstConfig): SstConfig;

declare const process: { env: Record<string, string | undefined> };

declare namespace sst {
  class Secret {
    constructor(name: string, placeholder?: $util.Input<string>);
    readonly name: string;
    readonly value: $util.Output<string>;
  }

  namespace aws {
    type Cpu = "0.25 vCPU" | "0.5 vCPU" | "1 vCPU" | "2 vCPU" | "4 vCPU" | "8 vCPU" | "16 vCPU";
    type Size = `${number} GB`;
    type DurationMinutes = `${number} ${"second" | "seconds" | "minute" | "minutes"}`;

    interface VpcArgs {
      az?: $util.Input<number | $util.Input<string>[]>;
      nat?: $util.Input<"ec2" | "managed">;
      bastion?: $util.Input<boolean>;
    }
    class Vpc {
      constructor(name: string, args?: VpcArgs);
      readonly id: $util.Output<string>;
      readonly publicSubnets: $util.Output<string[]>;
      readonly privateSubnets: $util.Output<string[]>;
      readonly securityGroups: $util.Output<string[]>;
    }

    class Cluster {
      constructor(name: string, args: { vpc: Vpc });
      readonly nodes: { cluster: { name: $util.Output<string>; arn: $util.Output<string> } };
    }

    interface Permission {
      effect?: "allow" | "deny";
      actions: string[];
      resources: $util.Input<$util.Input<string>[]>;
    }
    type Capacity =
      | "spot"
      | {
          fargate?: $util.Input<{ base?: $util.Input<number>; weight: $util.Input<number> }>;
          spot?: $util.Input<{ base?: $util.Input<number>; weight: $util.Input<number> }>;
        };
    interface ServiceArgs {
      cluster: Cluster;
      architecture?: $util.Input<"x86_64" | "arm64">;
      cpu?: Cpu;
      memory?: Size;
      storage?: Size;
      image?: $util.Input<
        | string
        | {
            context?: $util.Input<string>;
            dockerfile?: $util.Input<string>;
            args?: $util.Input<Record<string, $util.Input<string>>>;
            target?: $util.Input<string>;
          }
      >;
      command?: $util.Input<$util.Input<string>[]>;
      environment?: $util.Input<Record<string, $util.Input<string>>>;
      ssm?: $util.Input<Record<string, $util.Input<string>>>;
      permissions?: $util.Input<Permission[]>;
      link?: $util.Input<unknown[]>;
      capacity?: $util.Input<Capacity>;
      scaling?: $util.Input<{
        min?: $util.Input<number>;
        max?: $util.Input<number>;
        cpuUtilization?: $util.Input<false | number>;
        memoryUtilization?: $util.Input<false | number>;
        requestCount?: $util.Input<false | number>;
        scaleInCooldown?: $util.Input<DurationMinutes>;
        scaleOutCooldown?: $util.Input<DurationMinutes>;
      }>;
      health?: $util.Input<{
        command: $util.Input<string[]>;
        startPeriod?: $util.Input<DurationMinutes>;
        timeout?: $util.Input<DurationMinutes>;
        interval?: $util.Input<DurationMinutes>;
        retries?: $util.Input<number>;
      }>;
      logging?: $util.Input<{
        retention?: $util.Input<"1 day" | "1 week" | "1 month" | "1 year" | "forever">;
        name?: $util.Input<string>;
      }>;
      wait?: $util.Input<boolean>;
    }
    class Service {
      constructor(name: string, args: ServiceArgs);
      /** The Cloud Map host name of the service, reachable inside the VPC. */
      readonly service: $util.Output<string>;
    }

    class Bucket {
      constructor(name: string, args?: { public?: $util.Input<boolean> });
      readonly name: $util.Output<string>;
      readonly arn: $util.Output<string>;
    }

    class Postgres {
      constructor(name: string, args: { vpc: Vpc; instance?: $util.Input<string>; storage?: $util.Input<Size> });
      readonly host: $util.Output<string>;
      readonly port: $util.Output<number>;
      readonly username: $util.Output<string>;
      readonly password: $util.Output<string>;
      readonly database: $util.Output<string>;
    }
  }
}

// The parts of @pulumi/aws used here (SST exposes the provider as the global `aws`).
declare namespace aws {
  namespace ssm {
    interface ParameterArgs {
      name?: $util.Input<string>;
      type: $util.Input<"String" | "StringList" | "SecureString">;
      value: $util.Input<string>;
      description?: $util.Input<string>;
    }
    class Parameter {
      constructor(name: string, args: ParameterArgs);
      readonly arn: $util.Output<string>;
      readonly name: $util.Output<string>;
    }
  }
  namespace s3 {
    interface GetBucketResult {
      readonly arn: string;
      readonly bucket: string;
      readonly region: string;
    }
    interface BucketLifecycleConfigurationV2Rule {
      id: $util.Input<string>;
      status: $util.Input<"Enabled" | "Disabled">;
      filter?: $util.Input<{ prefix?: $util.Input<string> }>;
      abortIncompleteMultipartUpload?: $util.Input<{ daysAfterInitiation?: $util.Input<number> }>;
    }
    class BucketLifecycleConfigurationV2 {
      constructor(
        name: string,
        args: { bucket: $util.Input<string>; rules: $util.Input<BucketLifecycleConfigurationV2Rule[]> },
      );
    }
    // Pulumi lifts the properties of an Output's value onto the Output itself.
    function getBucketOutput(args: { bucket: $util.Input<string> }): $util.Output<GetBucketResult> & {
      readonly [K in keyof GetBucketResult]: $util.Output<GetBucketResult[K]>;
    };
  }
}
