package dockerfile

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// changeInstructions are the instructions `docker import --change` accepts:
// the ones that only edit an image's config.
var changeInstructions = []string{"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

// ApplyChanges applies Dockerfile instructions (kiln import --change
// 'CMD ["sh"]') to img's config, with the same rules as in a Dockerfile.
// Its history is left alone.
func ApplyChanges(img *dockerspec.DockerOCIImage, changes []string) error {
	history := img.History
	c := &compiler{lint: linter.New(&linter.Config{}), lex: shell.NewLex('\\'), opts: Options{Filename: "--change"}}
	st := &stageState{image: *img, runEnv: append([]string(nil), img.Config.Env...), shell: []string{"/bin/sh", "-c"}}
	for _, change := range changes {
		res, err := parser.Parse(strings.NewReader(change))
		if err != nil {
			return fmt.Errorf("--change %q: %w", change, err)
		}
		for _, node := range res.AST.Children {
			name := strings.ToUpper(node.Value)
			if !slices.Contains(changeInstructions, name) {
				return fmt.Errorf("--change %q: %s is not a valid change command (one of %s)", change, name, strings.Join(changeInstructions, ", "))
			}
			parsed, err := instructions.ParseInstruction(node)
			if err != nil {
				return fmt.Errorf("--change %q: %w", change, err)
			}
			cmd, ok := parsed.(instructions.Command)
			if !ok {
				return fmt.Errorf("--change %q: not an instruction", change)
			}
			if err := c.dispatch(context.Background(), st, cmd, ""); err != nil {
				return fmt.Errorf("--change %q: %w", change, err)
			}
		}
	}
	*img = st.image
	img.History = history
	return nil
}
