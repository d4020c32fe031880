package main

import (
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strings"

	"github.com/distribution/reference"
	"github.com/kiln-build/kiln/transport/registry"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Global registry flags, shared by every verb that talks to a registry.
var (
	insecureRegistries []string
	registryCAs        []string
)

func addRegistryFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&insecureRegistries, "insecure-registry", nil,
		"allow plain HTTP to this registry HOST[:PORT] (localhost and 127.0.0.1 always may); repeatable (env "+registry.EnvInsecure+", comma separated)")
	f.StringArrayVar(&registryCAs, "registry-ca", nil,
		"trust the CA certificates in this PEM file for registries, besides the system's; repeatable (env "+registry.EnvCA+")")
}

// registryConfig is how this kiln process reaches registries: the global
// flags plus KILN_INSECURE_REGISTRIES / KILN_REGISTRY_CA. Credentials come
// from $DOCKER_CONFIG/config.json or ~/.docker/config.json.
func registryConfig() registry.Config {
	return registry.Config{
		Insecure:  insecureRegistries,
		CAFiles:   registryCAs,
		UserAgent: "kiln",
	}.Merge(registry.FromEnv())
}

func pullCmd() *cobra.Command {
	var (
		quiet    bool
		platform string
	)
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry into the store",
		Long: `Download an image from a registry into the store.

References follow docker's rules: "busybox" is docker.io/library/busybox:latest.
A multi-platform image resolves to linux/` + goruntime.GOARCH + `. Layers the store already
has are not downloaded again. Credentials come from $DOCKER_CONFIG/config.json or
~/.docker/config.json (auths and credential helpers). Plain HTTP is used only for
localhost/127.0.0.1/::1 and --insecure-registry hosts; --registry-ca (or KILN_REGISTRY_CA,
or SSL_CERT_FILE) trusts a private CA.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			arch := goruntime.GOARCH
			variant := ""
			if platform != "" {
				parts := strings.Split(platform, "/")
				if len(parts) < 2 || len(parts) > 3 || parts[0] != "linux" {
					return fmt.Errorf("--platform %s: expected linux/ARCH[/VARIANT]", platform)
				}
				arch = parts[1]
				if len(parts) == 3 {
					variant = parts[2]
				}
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			var progress io.Writer = os.Stderr
			if quiet {
				progress = nil
			}
			if n, err := reference.ParseNormalizedNamed(args[0]); err == nil && reference.IsNameOnly(n) && !quiet {
				fmt.Fprintln(os.Stderr, "Using default tag: latest")
			}
			res, err := registry.Pull(cmd.Context(), st.Content, args[0], registry.PullOptions{
				Registry: registryConfig(),
				Progress: progress,
				Arch:     arch,
				Variant:  variant,
			})
			if err != nil {
				return err
			}
			fmt.Println(res.Name)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the image name, no progress")
	cmd.Flags().StringVar(&platform, "platform", "", "pick this platform from a multi-platform image (default linux/"+goruntime.GOARCH+")")
	return cmd
}
